/* Plotly legends on a phone-wide screen: below the plot instead of beside it.
 *
 * The server draws each figure for a laptop: a legend in the right margin (the Map's categories, the Sky's).
 * At 420 px that legend took half the width and left the map a strip. The server cannot know the
 * screen's width, so the browser moves the legend under the plot, in rows, whenever a figure is drawn on
 * a narrow screen (Dash sends a new figure with every view; each one is moved as it is drawn).
 */
(function () {
    'use strict';

    const NARROW = window.matchMedia('(max-width: 575.98px)');

    /* Plotly.react, not relayout: a relayout fires plotly_relayout, which dcc.Graph reports as the
     * graph's relayoutData: the Map's zoom callbacks would take the legend's move for a zoom (a round
     * trip per figure) and forget the reader's real zoom. */
    function fit(gd) {
        const full = gd._fullLayout;
        if (!NARROW.matches || !full || !full.showlegend || full.legend.orientation === 'h') { return; }
        const layout = Object.assign({}, gd.layout, {
            legend: Object.assign({}, gd.layout.legend, {orientation: 'h', x: 0, xanchor: 'left', y: 0, yanchor: 'top'}),
            margin: Object.assign({}, gd.layout.margin, {r: 0, autoexpand: true}),
        });
        window.Plotly.react(gd, gd.data, layout);
    }

    function watch(root) {
        const plots = root.querySelectorAll ? root.querySelectorAll('.js-plotly-plot') : [];
        plots.forEach(function (gd) {
            if (gd.dataset.atlasNarrow || typeof gd.on !== 'function') { return; }
            gd.dataset.atlasNarrow = '1';
            gd.on('plotly_afterplot', function () { window.requestAnimationFrame(function () { fit(gd); }); });
            fit(gd);
        });
    }

    function start() {
        watch(document);
        new MutationObserver(function (mutations) {
            mutations.forEach(function (m) {
                m.addedNodes.forEach(function (node) {
                    if (node.nodeType !== 1) { return; }
                    if (node.classList && node.classList.contains('js-plotly-plot')) { watch(node.parentNode); }
                    watch(node);
                });
                if (m.type === 'attributes' && m.target.classList.contains('js-plotly-plot')) { watch(m.target.parentNode); }
            });
        }).observe(document.body, {childList: true, subtree: true, attributes: true, attributeFilter: ['class']});
    }

    if (document.readyState === 'loading') {
        document.addEventListener('DOMContentLoaded', start);
    } else {
        start();
    }
})();
