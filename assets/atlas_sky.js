/* Cosmic Atlas: the Aladin Lite view of the Sky page (window.atlasSky), called by the clientside
 * callback atlas.skyAladin in assets/atlas_clientside.js.
 *
 * Aladin Lite (vendored in assets/vendor, LGPL) is an ES module, which Dash cannot load as an asset
 * script (app.py keeps it out with assets_path_ignore). This file is a plain script that Dash loads on
 * every page, but it only defines functions: the module is imported on first use, i.e. on the Sky page
 * only. The view is created once; whenever the filtered sources change the markers are replaced.
 * A marker click opens the entry. window.atlasAladin, window.atlasCatalog and window.atlasSkyMarkers
 * are read by tests/test_browser.py.
 */
(function () {
    'use strict';

    /* The vendored module, next to this file (so a URL prefix in front of /assets/ is kept). */
    const HERE = (document.currentScript && document.currentScript.src) || (window.location.origin + '/assets/');
    const ALADIN_MODULE = new URL('vendor/aladin-lite-3.8.2/aladin.js', HERE).href;
    /* Survey properties fetched to tell whether the background images can load (they stream from CDS). */
    const SURVEY_PROBE = 'https://alasky.cds.unistra.fr/DSS/DSSColor/properties';

    async function ensureView(containerId) {
        if (!window.atlasAladin) {
            const A = (await import(ALADIN_MODULE)).default;
            await A.init;
            window.atlasAladinLib = A;
            window.atlasAladin = A.aladin('#' + containerId, {survey: 'P/DSS2/color', fov: 180, projection: 'AIT',
                                                             showReticle: false, cooFrame: 'ICRS'});
            window.atlasAladin.on('objectClicked', function (obj) {
                if (obj && obj.data && obj.data.date) { window.location.assign('/entry/' + obj.data.date); }
            });
        }
        return window.atlasAladinLib;
    }

    function replaceMarkers(A, sources) {
        if (window.atlasCatalog) { window.atlasCatalog.removeAll(); }
        else {
            window.atlasCatalog = A.catalog({name: 'APOD entries', sourceSize: 10, color: '#ffb000',
                                             onClick: 'showPopup'});
            window.atlasAladin.addCatalog(window.atlasCatalog);
        }
        window.atlasCatalog.addSources(sources.map(s => A.source(s.ra_deg, s.dec_deg,
            {date: s.date, title: s.title, name: s.name})));
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

    window.atlasSky = {showMarkers: showMarkers};
}());
