/* Elements Dash adds to a page at any time (React renders pages, results and figures when it likes).
 *
 * window.atlasWhenAdded(selector, found, attributes): calls found(element, changed) for each element
 * matching the selector in the page now and for each one added later; with `attributes` (a list of
 * attribute names), also when one of those changes on a matching element (changed = true: React re-used
 * the element for something else, or a library set it up). Loaded before the scripts that use it
 * (Dash loads assets in name order): atlas_pictures.js, atlas_narrow.js.
 */
(function () {
    'use strict';

    window.atlasWhenAdded = function (selector, found, attributes) {
        function scan(root) {
            if (root.matches && root.matches(selector)) { found(root, false); }
            if (root.querySelectorAll) { root.querySelectorAll(selector).forEach(function (e) { found(e, false); }); }
        }

        function start() {
            scan(document);
            const options = {childList: true, subtree: true};
            if (attributes) { options.attributes = true; options.attributeFilter = attributes; }
            new MutationObserver(function (mutations) {
                mutations.forEach(function (m) {
                    m.addedNodes.forEach(function (node) { if (node.nodeType === 1) { scan(node); } });
                    if (m.type === 'attributes' && m.target.matches && m.target.matches(selector)) { found(m.target, true); }
                });
            }).observe(document.body, options);
        }

        if (document.readyState === 'loading') {
            document.addEventListener('DOMContentLoaded', start);
        } else {
            start();
        }
    };
})();
