/* Cosmic Atlas clientside callbacks (namespace "atlas"), wired in pages/*.py with
 * dash.ClientsideFunction(namespace="atlas", function_name=...).
 *
 * Why here and not in Python strings: a real JavaScript file is linted, highlighted and cached by the
 * browser, and Dash loads every script in assets/ on every page, so the functions exist before any
 * callback needs them. Component ids are not written here: the callbacks pass them in (as State of a
 * component's "id"), so pages/ids.py stays the only place they are spelled.
 */
(function () {
    'use strict';

    /* Longest Map selection kept in the URL (more would make unwieldy links; the session store keeps it). */
    const MAX_URL_SELECTION = 200;

    /* A large map's WebGL figure replaces its first one only after the reader's mouse, keys and wheel have
     * rested this long (ms) since that figure was drawn: Plotly's WebGL set-up holds the page for ≈ 0.4 s
     * in a software-rendered browser, better spent while nobody is pointing at anything. */
    const QUIET_BEFORE_UPGRADE = 800;
    let lastInput = 0;
    ['pointermove', 'pointerdown', 'wheel', 'keydown', 'touchstart'].forEach(type =>
        window.addEventListener(type, () => { lastInput = performance.now(); }, {passive: true, capture: true}));

    /* Replace the query string without notifying Dash's router: the page keeps its state but is not
     * re-rendered, and the URL stays bookmarkable. */
    function replaceQuery(params, alwaysQuestionMark) {
        const qs = params.toString();
        const suffix = (qs || alwaysQuestionMark) ? '?' + qs : '';
        window.history.replaceState(null, '', window.location.pathname + suffix);
    }

    function setFilters(params, cats, years) {
        if (cats && cats.length) { params.set('cats', cats.join(',')); }
        if (years && years.length === 2) { params.set('years', years.join(',')); }
    }

    window.dash_clientside = Object.assign({}, window.dash_clientside, {
        atlas: {
            /* Every page: the navbar's toggler opens and closes its links on a narrow screen, and
             * another page closes them (app.py). */
            navToggle: function (clicks, pathname, open) {
                const by = (window.dash_clientside.callback_context.triggered || []).map(function (t) {
                    return t.prop_id;
                });
                return by.indexOf('nav-toggle.n_clicks') >= 0 ? !open : false;
            },

            /* Map page: embedding, method, colouring, filters and (short) selection into the URL. */
            mapUrl: function (emb, method, color, cats, years, sel) {
                const p = new URLSearchParams();
                p.set('emb', emb); p.set('method', method); p.set('color', color);
                setFilters(p, cats, years);
                if (sel && sel.length && sel.length <= MAX_URL_SELECTION) { p.set('sel', sel.join(',')); }
                replaceQuery(p, true);
                return window.dash_clientside.no_update;
            },

            /* Map page: a page whose URL named no selection (its store holds null) takes back the one this
             * tab made last ({selection, dates, total} in the session's store, pages/home.py fill_table);
             * an empty one when there is none. Any other change of the selection: nothing to do. */
            restoreSelection: function (selection, stored) {
                if (selection !== null && selection !== undefined) { return window.dash_clientside.no_update; }
                if (Array.isArray(stored)) { return stored; }  // a tab's record from before it had fields
                return (stored && stored.selection) || [];
            },

            /* Map page: a large map's first figure is a small sample in SVG (pages/home.py map_outputs), so
             * it answers the mouse before Plotly could set up WebGL. Once Plotly has drawn it, the reader's
             * input has rested (QUIET_BEFORE_UPGRADE) and the browser is idle, resolve: the server then
             * sends the WebGL figure, and the set-up is paid while the reader looks, not on the first zoom.
             * Any other figure: nothing to do. */
            mapUpgrade: function (figure, graphId) {
                const data = (figure && figure.data) || [];
                const svgSample = data.length && data.every(t => t.type === 'scatter') &&
                    figure.layout && figure.layout.images && figure.layout.images.length;
                if (!svgSample) { return window.dash_clientside.no_update; }
                return new Promise(resolve => {
                    const started = performance.now();
                    const drawn = () => {
                        const gd = document.querySelector('#' + CSS.escape(graphId) + ' .js-plotly-plot');
                        if (gd && gd._fullData && gd._fullData.length && gd._fullData[0].type === 'scatter') {
                            const drawnAt = performance.now();
                            const idle = window.requestIdleCallback || (f => setTimeout(f, 50));
                            const whenQuiet = () => {
                                const wait = QUIET_BEFORE_UPGRADE - (performance.now() - Math.max(lastInput, drawnAt));
                                if (wait > 0) { setTimeout(whenQuiet, wait); } else { idle(() => resolve(Date.now()), {timeout: 2000}); }
                            };
                            whenQuiet();
                        } else if (performance.now() - started < 30000) {
                            requestAnimationFrame(drawn);
                        }
                    };
                    drawn();
                });
            },

            /* Sky page: category and year filters into the URL. */
            skyUrl: function (cats, years) {
                const p = new URLSearchParams();
                setFilters(p, cats, years);
                replaceQuery(p, false);
                return window.dash_clientside.no_update;
            },

            /* Sky page: markers in Aladin Lite (see assets/atlas_sky.js); returns the status line. */
            skyAladin: function (sources, containerId) {
                return window.atlasSky.showMarkers(sources, containerId);
            },

            /* Galaxies page: the query galaxy and its neighbours in Aladin Lite (assets/atlas_sky.js). */
            galaxyAladin: function (sources, containerId) {
                return window.atlasSky.showGalaxies(sources, containerId);
            }
        }
    });
}());
