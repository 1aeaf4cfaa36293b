/* Cosmic Atlas: the Aladin Lite view of the Sky page (window.atlasSky), called by the clientside
 * callback atlas.skyAladin in assets/atlas_clientside.js.
 *
 * Aladin Lite (vendored in assets/vendor, LGPL) is an ES module, which Dash cannot load as an asset
 * script (app.py keeps it out with assets_path_ignore). This file is a plain script that Dash loads on
 * every page, but it only defines functions: the module is imported on first use, i.e. on the Sky page
 * only. The view is created once; whenever the filtered sources change the markers are replaced.
 * A marker click opens the entry. window.atlasAladin, window.atlasCatalog, window.atlasSkyMarkers and
 * window.atlasGalaxyView are read by tests/test_browser.py.
 */
(function () {
    'use strict';

    /* The vendored module, next to this file (so a URL prefix in front of /assets/ is kept). */
    const HERE = (document.currentScript && document.currentScript.src) || (window.location.origin + '/assets/');
    const ALADIN_MODULE = new URL('vendor/aladin-lite-3.8.2/aladin.js', HERE).href;
    /* Survey properties fetched to tell whether the background images can load (they stream from CDS). */
    const SURVEY_PROBE = 'https://alasky.cds.unistra.fr/DSS/DSSColor/properties';

    /* The Aladin Lite module, imported and initialised once for every view of the session. */
    async function aladinLib() {
        if (!window.atlasAladinLib) {
            const A = (await import(ALADIN_MODULE)).default;
            await A.init;
            window.atlasAladinLib = A;
        }
        return window.atlasAladinLib;
    }

    /* The sky view in `containerId`: made again when the page was left and re-entered (Dash then renders
       a new container, and a view kept from before would draw into the removed one). */
    async function ensureView(containerId) {
        // the module first, the check after: from here on nothing awaits, so two calls made while the
        // module loads (sources changed at once on a first visit) cannot both find no view and make two
        const A = await aladinLib();
        const el = document.getElementById(containerId);
        if (!window.atlasAladin || !window.atlasAladinEl || !document.body.contains(window.atlasAladinEl)) {
            window.atlasAladinEl = el;
            window.atlasCatalog = null;  // the old view's catalogue went with it
            window.atlasAladin = A.aladin('#' + containerId, {survey: 'P/DSS2/color', fov: 180, projection: 'AIT',
                                                             showReticle: false, cooFrame: 'ICRS'});
            window.atlasAladin.on('objectClicked', function (obj) {
                if (obj && obj.data && obj.data.date) { window.location.assign('/entry/' + obj.data.date); }
            });
        }
        return A;
    }

    const HTML_ESCAPES = {'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'};
    function escapeHtml(value) {
        return String(value == null ? '' : value).replace(/[&<>"']/g, c => HTML_ESCAPES[c]);
    }

    function replaceMarkers(A, sources) {
        if (window.atlasCatalog) { window.atlasCatalog.removeAll(); }
        else {
            window.atlasCatalog = A.catalog({name: 'APOD entries', sourceSize: 10, color: '#ffb000',
                                             onClick: 'showPopup'});
            window.atlasAladin.addCatalog(window.atlasCatalog);
        }
        // Aladin's popup writes these values into its table as HTML: archive titles and object names
        // go in escaped, so markup in them shows as text
        window.atlasCatalog.addSources(sources.map(s => A.source(s.ra_deg, s.dec_deg,
            {date: escapeHtml(s.date), title: escapeHtml(s.title), name: escapeHtml(s.name)})));
        window.atlasSkyMarkers = sources.length;
    }

    async function surveyNote() {
        try {
            const ctl = new AbortController(); setTimeout(() => ctl.abort(), 4000);
            await fetch(SURVEY_PROBE, {mode: 'no-cors', signal: ctl.signal});
            return '';
        } catch (e) {
            return ' · survey images cannot be loaded from CDS (no internet connection?): markers are shown on a blank sky';
        }
    }

    /* Show `sources` ({date, title, name, ra_deg, dec_deg} records) in the element with id `containerId`;
     * resolves to the status line under the view. */
    async function showMarkers(sources, containerId) {
        if (!sources) { return window.dash_clientside.no_update; }
        try {
            replaceMarkers(await ensureView(containerId), sources);
            const survey = await surveyNote();
            return sources.length.toLocaleString() + ' markers in Aladin Lite' + survey;
        } catch (err) {
            return 'Aladin Lite could not start here (' + err + '); the all-sky map above has the same entries.';
        }
    }

    /* Galaxies page: its own view (the page's element is new after each navigation, so the view is
     * remade when its element left the document), centred on the galaxies, SDSS colour survey. The
     * query galaxy is drawn in orange, its neighbours in cyan; window.atlasGalaxyMarkers counts them. */
    let galaxyView = null;

    async function showGalaxies(sources, containerId) {
        if (!sources) { return window.dash_clientside.no_update; }
        const el = document.getElementById(containerId);
        if (!el) { return window.dash_clientside.no_update; }
        if (!sources.length) {  // nothing to mark (a bad objid): the last galaxies' markers go too
            if (galaxyView) { galaxyView.query.removeAll(); galaxyView.near.removeAll(); }
            window.atlasGalaxyMarkers = 0;
            return '';
        }
        try {
            const A = await aladinLib();
            // centre = mean direction (Stripe 82 wraps around RA 0), field = twice the farthest galaxy
            const rad = Math.PI / 180;
            const xyz = sources.map(s => [Math.cos(s.dec * rad) * Math.cos(s.ra * rad),
                                          Math.cos(s.dec * rad) * Math.sin(s.ra * rad), Math.sin(s.dec * rad)]);
            const m = [0, 1, 2].map(i => xyz.reduce((a, v) => a + v[i], 0));
            const norm = Math.hypot(m[0], m[1], m[2]) || 1;
            const c = m.map(v => v / norm);
            const ra0 = ((Math.atan2(c[1], c[0]) / rad) + 360) % 360, dec0 = Math.asin(c[2]) / rad;
            const far = Math.max(...xyz.map(v => Math.acos(Math.min(1, v[0] * c[0] + v[1] * c[1] + v[2] * c[2])) / rad));
            const target = ra0.toFixed(5) + ' ' + dec0.toFixed(5);
            const fov = Math.min(180, Math.max(0.05, far * 2.4));
            if (!galaxyView || !document.body.contains(galaxyView.el)) {
                const aladin = A.aladin('#' + containerId, {survey: 'P/SDSS9/color', fov: fov, target: target,
                                                           showReticle: false, cooFrame: 'ICRS'});
                const query = A.catalog({name: 'query galaxy', sourceSize: 14, color: '#ff7f0e', onClick: 'showPopup'});
                const near = A.catalog({name: 'neighbours', sourceSize: 10, color: '#17becf', onClick: 'showPopup'});
                aladin.addCatalog(query);
                aladin.addCatalog(near);
                galaxyView = window.atlasGalaxyView = {el: el, aladin: aladin, query: query, near: near};
            } else {
                galaxyView.aladin.gotoObject(target);
                galaxyView.aladin.setFoV(fov);
            }
            galaxyView.query.removeAll();
            galaxyView.near.removeAll();
            const mark = s => A.source(s.ra, s.dec, {objid: escapeHtml(s.objid), class: escapeHtml(s.gz_class)});
            galaxyView.query.addSources(sources.filter(s => s.role === 'query').map(mark));
            galaxyView.near.addSources(sources.filter(s => s.role !== 'query').map(mark));
            window.atlasGalaxyMarkers = sources.length;
            return sources.length + ' galaxies marked in Aladin Lite' + (await surveyNote());
        } catch (err) {
            return 'Aladin Lite could not start here (' + err + ').';
        }
    }

    window.atlasSky = {showMarkers: showMarkers, showGalaxies: showGalaxies};
}());
