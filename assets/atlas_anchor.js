/* A link to a section of a page (/entry/2014-01-20#entry-compare) lands on that section.
 *
 * Dash renders a page's content after the browser has looked for the URL's #fragment, so the browser's
 * own jump finds nothing: this waits for the element to appear (at most 15 s) and scrolls to it, on the
 * first load and after each navigation inside the app. */
(function () {
    "use strict";
    let observer = null;
    let timer = null;

    function stop() {
        if (observer) {
            observer.disconnect();
            observer = null;
        }
        if (timer !== null) {
            window.clearTimeout(timer);
            timer = null;
        }
    }

    function fragment() {
        try {
            return decodeURIComponent(window.location.hash.slice(1));
        } catch (e) {  // a malformed %-escape: no section to look for
            return "";
        }
    }

    function seek() {
        stop();
        const id = fragment();
        if (!id) {
            return;
        }
        const reached = function () {
            const el = document.getElementById(id);
            if (el) {
                el.scrollIntoView({block: "start"});
            }
            return Boolean(el);
        };
        if (reached()) {
            return;
        }
        observer = new MutationObserver(function () {
            if (reached()) {
                stop();
            }
        });
        observer.observe(document.body, {childList: true, subtree: true});
        timer = window.setTimeout(stop, 15000);  // a section the page never shows
    }

    window.addEventListener("hashchange", seek);
    window.addEventListener("_dashprivate_pushstate", seek);
    if (document.readyState === "loading") {
        document.addEventListener("DOMContentLoaded", seek);
    } else {
        seek();
    }
})();
