/* Pictures that are not stored in the lake (NASA URLs, video stills): loaded lazily, and replaced by an
 * "unavailable offline" placeholder when they cannot load.
 *
 * Pages render such pictures as <img class="atlas-remote" data-src="https://…"> (lake/pictures.py decides
 * which). Dash renders pages with React at any time, so atlasWhenAdded finds new ones; an
 * IntersectionObserver gives each its real src only when it comes near the viewport, so a page of
 * results does not fetch pictures nobody scrolls to. A failed load (offline browser, moved file) gets
 * the class atlas-picture-offline and the placeholder; data-src keeps the original URL.
 */
(function () {
    'use strict';

    /* by the picture's kind (data-kind, lake/pictures.py): NASA's own files, or a video's still */
    const PLACEHOLDERS = {video: '/assets/video-still-offline.svg'};
    const PLACEHOLDER = '/assets/picture-offline.svg';

    function host(url) {
        try { return new URL(url, window.location.href).hostname; } catch (e) { return 'another site'; }
    }

    function failed(img) {
        if (img.classList.contains('atlas-picture-offline')) { return; }
        img.classList.add('atlas-picture-offline');
        img.dataset.failedSrc = img.currentSrc || img.src;  /* what was tried, for people and tests */
        img.title = 'This picture is on ' + host(img.dataset.src) + ' and could not be loaded (offline?)';
        img.src = PLACEHOLDERS[img.dataset.kind] || PLACEHOLDER;
    }

    function load(img) {
        if (img.dataset.loading) { return; }
        img.dataset.loading = '1';
        img.addEventListener('error', function () { failed(img); }, {once: true});
        img.src = img.dataset.src;
    }

    const nearView = ('IntersectionObserver' in window) ? new IntersectionObserver(function (entries) {
        entries.forEach(function (entry) {
            if (entry.isIntersecting) {
                nearView.unobserve(entry.target);
                load(entry.target);
            }
        });
    }, {rootMargin: '300px'}) : null;

    function watch(img, reused) {
        if (reused) {  /* React re-used the element for another picture */
            delete img.dataset.watched;
            delete img.dataset.loading;
            img.classList.remove('atlas-picture-offline');
        }
        if (img.dataset.watched) { return; }
        img.dataset.watched = '1';
        if (nearView) { nearView.observe(img); } else { load(img); }
    }

    window.atlasWhenAdded('img.atlas-remote[data-src]', watch, ['data-src']);  /* assets/atlas_added.js */
})();
