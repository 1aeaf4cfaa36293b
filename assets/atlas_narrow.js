/* Plotly legends on a phone-wide screen: below the plot instead of beside it.
 *
 * The server draws each figure for a laptop: a legend in the right margin (the Map's categories, the Sky's).
 * At 420 px that legend took half the width and left the map a strip. The server cannot know the
 * screen's width, so the browser moves the legend under the plot, in rows, whenever a figure is drawn on
 * a narrow screen (Dash sends a new figure with every view; each one is moved as it is drawn). A moved
 * legend keeps the server's placement beside it, and goes back there when the window widens (a phone
 * turned sideways, a window dragged wider); narrowed again, it moves again.
 */
(function () {
    'use strict';

    const NARROW = window.matchMedia('(max-width: 575.98px)');

    /* Plotly.react, not relayout: a relayout fires plotly_relayout, which dcc.Graph reports as the
     * graph's relayoutData: the Map's zoom callbacks would take the legend's move for a zoom (a round
     * trip per figure) and forget the reader's real zoom. */
    function fit(gd) {
        const full = gd._fullLayout;
        if (gd.atlasWide && gd.layout.legend !== gd.atlasWide.placed) { delete gd.atlasWide; }  /* a new figure */
        if (!NARROW.matches || !full || !full.showlegend || !full.legend || full.legend.orientation === 'h') { return; }
        const legend = Object.assign({}, gd.layout.legend, {orientation: 'h', x: 0, xanchor: 'left', y: 0, yanchor: 'top'});
        gd.atlasWide = {legend: gd.layout.legend, margin: gd.layout.margin, placed: legend};
        place(gd, legend, Object.assign({}, gd.layout.margin, {r: 0, autoexpand: true}));
    }

    /* back where the server put it: only a legend this script placed, while the figure is still the one it
     * moved (a figure Dash sent since, with or without a legend, has the server's own placement) */
    function unfit(gd) {
        const wide = gd.atlasWide;
        delete gd.atlasWide;
        if (!wide || !gd.layout || gd.layout.legend !== wide.placed) { return; }
        place(gd, wide.legend, wide.margin);
    }

    function place(gd, legend, margin) {
        const layout = Object.assign({}, gd.layout, {legend: legend, margin: margin});
        if (legend === undefined) { delete layout.legend; }
        if (margin === undefined) { delete layout.margin; }
        window.Plotly.react(gd, gd.data, layout);
    }

    function watch(gd) {
        if (gd.dataset.atlasNarrow || typeof gd.on !== 'function') { return; }  /* Plotly not set up yet */
        gd.dataset.atlasNarrow = '1';
        gd.on('plotly_afterplot', function () { window.requestAnimationFrame(function () { fit(gd); }); });
        fit(gd);
    }

    /* Plotly gives a graph's element the class js-plotly-plot as it sets it up (assets/atlas_added.js) */
    window.atlasWhenAdded('.js-plotly-plot', watch, ['class']);

    function resized() {
        document.querySelectorAll('.js-plotly-plot[data-atlas-narrow]').forEach(NARROW.matches ? fit : unfit);
    }
    if (NARROW.addEventListener) { NARROW.addEventListener('change', resized); } else { NARROW.addListener(resized); }  /* Safari < 14 */
})();
