"""The dashboard in real headless Chromium, served by gunicorn as in the Procfile."""

from __future__ import annotations

import csv
import re
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import REPO, serve_dashboard

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCREENSHOTS = REPO / "tests" / "screenshots"
CDS_UNREACHABLE = "MAP *.unistra.fr ~NOTFOUND, MAP *.u-strasbg.fr ~NOTFOUND, MAP alasky.cds.unistra.fr ~NOTFOUND"
# the browser is offline for NASA and YouTube too, here and on any CI: remote pictures take the offline path
REMOTE_PICTURES_UNREACHABLE = "MAP apod.nasa.gov ~NOTFOUND, MAP img.youtube.com ~NOTFOUND"


@pytest.fixture(scope="module")
def server(demo_lake, tmp_path_factory):
    with serve_dashboard(demo_lake, log=tmp_path_factory.mktemp("gunicorn") / "server.log") as url:
        yield url


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads):
    from bench.common import ChromiumMissing, chromium

    try:
        # the CDS survey servers are unreachable for this browser whether or not the machine has
        # internet, so the Sky page's offline path is what the tests check, everywhere
        # reduced motion: no smooth scrolling or fades, so an element is where it was found when clicked
        driver = chromium(extra_args=(f"--host-resolver-rules={CDS_UNREACHABLE}, {REMOTE_PICTURES_UNREACHABLE}",
                                      "--force-prefers-reduced-motion"),
                          capabilities={"goog:loggingPrefs": {"browser": "ALL"}},
                          prefs={"download.default_directory": str(downloads), "download.prompt_for_download": False})
    except ChromiumMissing as exc:
        pytest.fail(str(exc))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def wait_for(driver, css: str, timeout: float = 30):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(ec.presence_of_element_located((By.CSS_SELECTOR, css)))


def wait_until(fn, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def click_when_clear(driver, xpath: str, what: str) -> None:
    """Click an element as a user would, once it stands still and nothing covers it: lazy pictures that
    load above it move the page for a while (longer on a slow machine), and a click meanwhile lands on
    another element. The scroll is instant (Bootstrap makes page scrolling smooth, and a click during the
    animation lands where the element was); a failure names what took the click."""
    from selenium.common.exceptions import ElementClickInterceptedException, StaleElementReferenceException

    last: list[str] = []
    where = "const r = arguments[0].getBoundingClientRect(); return [r.x, r.y, r.width, r.height];"

    def attempt() -> bool:
        try:
            element = driver.find_element("xpath", xpath)
            driver.execute_script("arguments[0].scrollIntoView({block: 'center', behavior: 'instant'})", element)
            before = driver.execute_script(where, element)
            time.sleep(0.1)
            if driver.execute_script(where, element) != before:
                last[:] = [f"still moving at {before}"]
                return False
            element.click()
        except (ElementClickInterceptedException, StaleElementReferenceException) as exc:
            last[:] = [exc.msg or type(exc).__name__]
            return False
        return True

    try:
        wait_until(attempt, what=f"{what} to be clickable")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last attempt: {last[0] if last else 'none'}") from None


def console_errors(driver, entries: list[dict] | None = None) -> list[str]:
    """SEVERE browser messages (of ``entries`` when given: the log as already read, which reading
    empties), except the network errors of remote pictures this browser cannot reach (the app handles
    those: it shows the offline placeholder)."""
    remote = ("https://apod.nasa.gov/", "https://img.youtube.com/")
    return [e["message"] for e in (driver.get_log("browser") if entries is None else entries) if e["level"] == "SEVERE"
            and not (e["message"].startswith(remote) and "Failed to load resource" in e["message"])]


#: JavaScript: the ISO date of a map point's customdata (its entry's day number since 1970-01-01).
DAY_TO_DATE = "const dayToDate = n => new Date(n * 86400000).toISOString().slice(0, 10);"


def points_on_map(driver) -> int:
    """Points Plotly has drawn (``_fullData``: the map sends binary arrays, which Plotly decodes there)."""
    return driver.execute_script(
        "const gd = document.querySelector('#map-graph .js-plotly-plot');"
        "return gd && gd._fullData ? gd._fullData.reduce((s, t) => s + (t.customdata ? t.customdata.length : 0), 0)"
        " : -1;")


def download_csv(driver, downloads: Path, button_id: str, name: str) -> list[dict[str, str]]:
    """Click a download button and read the CSV the browser saved as ``name`` (earlier files cleared)."""
    for f in downloads.glob("*"):
        f.unlink()
    button = driver.find_element("id", button_id)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center', behavior: 'instant'})", button)
    time.sleep(0.3)
    button.click()
    csv_file = wait_until(lambda: next(iter(downloads.glob(name)), None), what=f"download of {name}")
    time.sleep(0.5)
    with open(csv_file, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def shot(driver, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


@pytest.mark.parametrize("path,ready,name", [
    ("/", "#map-graph .js-plotly-plot .scatterlayer, #map-graph .js-plotly-plot .gl-container", "map"),
    ("/categories", "#cat-grid .atlas-card", "categories"),
    ("/entry/2014-01-07", ".atlas-neighbours .atlas-card", "entry"),
    ("/metrics", "#metrics-samples .js-plotly-plot", "metrics"),
    ("/search?q=moon", "#search-results .atlas-hit", "search"),
    ("/galaxies", "#gal-map .js-plotly-plot", "galaxies_page"),
    ("/sky", "#sky-graph .js-plotly-plot", "sky_page"),
    ("/oddities", "#odd-gallery .atlas-oddity", "oddities_page"),
])
def test_every_page_loads_without_console_errors(browser, server, path, ready, name):
    browser.get("about:blank")  # the page before may still be logging (Aladin Lite's survey requests)
    time.sleep(0.5)
    browser.get_log("browser")  # drop earlier messages
    browser.get(server + path)
    wait_for(browser, ready, timeout=45)
    time.sleep(1.0)  # late callbacks
    offline = OFFLINE_ALADIN if path in ("/sky", "/galaxies") else ()  # the pages with Aladin Lite
    assert [e for e in console_errors(browser) if not any(s in e for s in offline)] == []
    body = browser.find_element("css selector", "body").text
    assert "No data lake yet" not in body and "Traceback" not in body
    assert not browser.find_elements("css selector", ".alert-danger, .dash-fe-error__title")
    # one main heading, and the language declared (screen readers read the page by both)
    assert browser.execute_script("return document.documentElement.lang") == "en"
    assert len(browser.find_elements("css selector", "h1")) == 1
    # every visible input and select of ours has a name (Dash's dropdown focus helpers, dcc.Upload's file
    # input and Aladin Lite's controls are not ours)
    unnamed = browser.execute_script("""
        return [...document.querySelectorAll('input, select, textarea')].filter(e =>
            e.type !== 'hidden' && e.type !== 'file' && e.offsetParent !== null
            && !e.classList.contains('dash-dropdown-focus-target') && !e.closest('#sky-aladin, #gal-aladin')
            && !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.getAttribute('aria-labelledby')
        ).map(e => e.tagName + '#' + e.id);""")
    assert unnamed == []
    shot(browser, name)


def test_a_phone_wide_screen_folds_the_navbar_and_nothing_is_wider_than_it(browser, server):
    """At 420 px the navbar's links fold behind a toggler, and no page is wider than the screen (the
    metrics table and a 600-character query's heading were)."""
    size = browser.get_window_size()
    browser.set_window_size(420, 900)
    try:
        for path, ready in (("/metrics", "#metrics-table table"), ("/search?q=" + "n" * 600, "#search-results"),
                            ("/", "#map-graph .js-plotly-plot"), ("/sky", "#cone-go")):
            browser.get(server + path)
            wait_for(browser, ready, timeout=45)
            wide, screen = browser.execute_script(
                "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
            assert wide <= screen, (path, wide, screen)
        for path, graph in (("/", "#map-graph"), ("/sky", "#sky-graph")):  # legends under the plot, in rows
            browser.get(server + path)
            wait_until(lambda graph=graph: browser.execute_script(
                f"const gd = document.querySelector('{graph} .js-plotly-plot');"
                "return gd && gd._fullLayout && gd._fullLayout.legend && gd._fullLayout.legend.orientation === 'h';"),
                what=f"{graph}'s legend below it")
        # a new figure (as Dash sends one per view) is moved too, without a relayout event: dcc.Graph would
        # report one as relayoutData, which the Map's zoom callbacks read
        browser.execute_script("""
            const gd = document.querySelector('#sky-graph .js-plotly-plot');
            window.atlasRelayouts = [];
            gd.on('plotly_relayout', e => { window.atlasRelayouts.push(...Object.keys(e)); });
            const layout = Object.assign({}, gd.layout, {legend: Object.assign({}, gd.layout.legend, {orientation: 'v'})});
            window.Plotly.react(gd, gd.data, layout);""")
        wait_until(lambda: browser.execute_script(
            "return document.querySelector('#sky-graph .js-plotly-plot')._fullLayout.legend.orientation === 'h';"),
            what="the new figure's legend below it")
        moved = [k for k in browser.execute_script("return window.atlasRelayouts") if k.startswith(("legend", "margin"))]
        assert moved == []  # (a resize's own {autosize: true} may come: Plotly's, not ours)
        # widened, a moved legend goes back where the server drew it (the Map's: in its fixed right margin);
        # narrowed again, under the plot again; a figure without a legend since (cluster colours) is left alone
        from pages.figures import MAP_RIGHT_MARGIN

        def map_legend() -> list | str | None:
            """[orientation, right margin] of the Map's legend; None: a figure without one."""
            return browser.execute_script(
                "const gd = document.querySelector('#map-graph .js-plotly-plot');"
                "if (!gd || !gd._fullLayout) { return 'not drawn'; } const full = gd._fullLayout;"
                "return full.showlegend && full.legend ? [full.legend.orientation, full.margin.r] : null;")

        browser.get(server + "/")
        wait_until(lambda: map_legend() == ["h", 0], what="the Map's legend below it")
        browser.set_window_size(size["width"], size["height"])
        wait_until(lambda: map_legend() == ["v", MAP_RIGHT_MARGIN["category"]],
                   what="the legend back in the map's right margin")
        browser.set_window_size(420, 900)
        wait_until(lambda: map_legend() == ["h", 0], what="the legend below it again")
        def colour_by(value: str) -> None:
            radio = browser.find_element("css selector", f"#map-color input[value='{value}']")
            browser.execute_script("arguments[0].click()", radio)

        colour_by("cluster")
        wait_until(lambda: map_legend() is None, what="the cluster colours' figure, without a legend")
        browser.get_log("browser")
        browser.set_window_size(size["width"], size["height"])
        colour_by("category")  # the server's figure for a wide screen
        wait_until(lambda: map_legend() == ["v", MAP_RIGHT_MARGIN["category"]], what="a wide screen's legend")
        assert console_errors(browser) == []  # widening over a figure without a legend threw
        browser.set_window_size(420, 900)
        link = browser.find_element("css selector", "#nav-collapse a.nav-link")
        assert not link.is_displayed()
        browser.find_element("id", "nav-toggle").click()
        wait_until(link.is_displayed, what="the navbar's links unfolded")
        assert browser.find_element("id", "nav-search").is_displayed()
        browser.find_element("css selector", "#nav-collapse a.nav-link[href='/metrics']").click()
        wait_until(lambda: browser.current_url.endswith("/metrics") and not link.is_displayed(),
                   what="another page, and the links folded again")
    finally:
        browser.set_window_size(size["width"], size["height"])


def test_filter_changes_map_and_counts(browser, server):
    browser.get(server + "/")
    wait_for(browser, "#map-graph .js-plotly-plot")
    total = wait_until(lambda: max(points_on_map(browser), 0), what="points")
    count_text = browser.find_element("id", "map-count").text
    browser.get(server + "/?cats=Nebula")  # the same state a user gets by picking Nebula in the dropdown
    wait_until(lambda: 0 < points_on_map(browser) < total, what="filtered map")
    assert browser.find_element("id", "map-count").text != count_text
    # and through the real dropdown: add Galaxy to the filter
    before = points_on_map(browser)
    browser.find_element("id", "map-cats").click()  # opens the option list
    option = wait_for(browser, "input.dash-options-list-option-checkbox[value='Galaxy']")
    browser.execute_script("arguments[0].closest('label, div, li').click()", option)
    wait_until(lambda: points_on_map(browser) > before, what="map with Galaxy added")
    assert "Galaxy" in browser.find_element("id", "map-category-counts").text
    assert "cats=Nebula%2CGalaxy" in browser.current_url or "cats=Nebula,Galaxy" in browser.current_url


def test_map_picture_paints_first_covers_the_plot_area_and_gives_way_to_plotly(browser, server):
    # without Plotly (still loading, or blocked) the page already shows the map as a picture
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
    browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*plotly.min.js*"]})
    try:
        browser.get(server + "/?color=year")
        wait_for(browser, ".atlas-map-preview")
        shown = wait_until(lambda: browser.execute_script(
            "const img = document.querySelector('.atlas-map-preview');"
            "return img && img.complete && img.naturalWidth && img.checkVisibility()"
            " && [img.src.split(',')[0], img.getBoundingClientRect().width];"), what="map picture decoded and shown")
        assert shown[0] == "data:image/png;base64" and shown[1] > 300 and points_on_map(browser) == -1
    finally:
        browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
        browser.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": False})
        # the blocked script's errors (Dash's Plotly loader rejects with the load's Event, logged by React's
        # error boundary) arrive asynchronously: leave the page, so all of them are in, then drop them
        browser.get("about:blank")
        browser.get_log("browser")
    browser.get(server + "/?color=year")
    wait_until(lambda: max(points_on_map(browser), 0), what="points")
    preview = browser.find_element("css selector", ".atlas-map-preview")
    assert not preview.is_displayed()  # Plotly has drawn: the picture is gone, not peeking through spinners
    # it covered exactly the plot area Plotly then drew the points in
    box, area = browser.execute_script("""
        const img = document.querySelector('.atlas-map-preview'); img.style.display = 'block';
        const r = img.getBoundingClientRect(); img.style.display = '';
        const gd = document.querySelector('#map-graph .js-plotly-plot'), g = gd.getBoundingClientRect();
        const s = gd._fullLayout._size;
        return [[r.left, r.top, r.width, r.height], [g.left + s.l, g.top + s.t, s.w, s.h]];""")
    assert box == pytest.approx(area, abs=1.5)


def test_selection_fills_table_and_download_matches(browser, server, downloads):
    browser.get_log("browser")  # this test checks this page's messages, not earlier tests'
    browser.get(server + "/")
    wait_until(lambda: points_on_map(browser) > 0, what="points")
    picked = browser.execute_script("""
        const gd = document.querySelector('#map-graph .js-plotly-plot');
        const t = gd._fullData[0];
        const pts = [0, 1, 2, 3, 4].filter(i => i < t.customdata.length).map(i => ({
            curveNumber: 0, pointNumber: i, pointIndex: i, customdata: t.customdata[i]}));
        gd.emit('plotly_selected', {points: pts});
        return pts.map(p => dayToDate(p.customdata)).sort();
    """.replace("const gd", DAY_TO_DATE + " const gd", 1))
    wait_until(lambda: f"Selection: {len(picked)} entries" in browser.find_element("id", "map-selection-title").text,
               what="selection table")
    # the table is mounted with the selection: its rows appear once AG Grid has laid them out
    rows = wait_until(lambda: browser.find_elements("css selector", "#map-table .ag-center-cols-container .ag-row"),
                      what="selection table rows")
    assert len(rows) == len(picked)
    confidence = [c.text for c in browser.find_elements("css selector", "#map-table .ag-center-cols-container "
                                                                        "[col-id=confidence]")]
    shown = [c for c in confidence if c]  # (a cell AG Grid has not laid out reads as blank)
    assert shown and all(re.fullmatch(r"\d{1,3}%", c) for c in shown), confidence
    logged = browser.get_log("browser")  # read once (reading empties it): for both checks
    assert [e["message"] for e in logged if "colDef" in e["message"]] == []  # "invalid colDef property 'linkTarget'"
    assert console_errors(browser, logged) == []
    got = download_csv(browser, downloads, "map-dl-csv", "cosmic_atlas_selection.csv")
    assert sorted(r["date"] for r in got) == picked
    assert {"credit", "copyright", "licence_note", "nasa_page"} <= set(got[0])
    assert "sel=" in browser.current_url
    # the Map again without a selection in its URL (the navbar's link): this tab's selection is taken back
    browser.get(server + "/")
    title = wait_for(browser, "#map-selection-title")
    wait_until(lambda: f"Selection: {len(picked)} entries" in title.text, what="the selection taken back")
    wait_until(lambda: "sel=" in browser.current_url, what="the selection back in the URL")
    assert console_errors(browser) == []


def test_click_on_point_opens_entry_with_neighbours(browser, server):
    browser.get(server + "/")
    wait_until(lambda: points_on_map(browser) > 0, what="points")
    date = browser.execute_script("""
        const gd = document.querySelector('#map-graph .js-plotly-plot');
        const t = gd._fullData[0];
        gd.emit('plotly_click', {points: [{curveNumber: 0, pointNumber: 0, pointIndex: 0,
                                            customdata: t.customdata[0]}]});
        return dayToDate(t.customdata[0]);
    """.replace("const gd", DAY_TO_DATE + " const gd", 1))
    wait_until(lambda: browser.current_url.endswith(f"/entry/{date}"), what="entry URL")
    wait_for(browser, ".atlas-neighbours .atlas-card")
    assert len(browser.find_elements("css selector", ".atlas-neighbours .atlas-card")) >= 3
    assert browser.find_element("id", "entry-title").text


def test_hovering_a_point_shows_its_card_beside_it(browser, server):
    """The hover card sits at the hovered point, above the map (it sat a header's height above the point,
    under the graph's stacking layer)."""
    from selenium.webdriver.common.action_chains import ActionChains

    browser.get(server + "/")
    wait_until(lambda: points_on_map(browser) > 0, what="points")
    graph = browser.find_element("css selector", "#map-graph .js-plotly-plot")
    # the point nearest the middle of the plot, in pixels from the graph's centre (where Selenium starts)
    dx, dy = browser.execute_script("""
        const gd = arguments[0], t = gd._fullData[0], fl = gd._fullLayout, s = fl._size;
        const px = i => [s.l + fl.xaxis.l2p(t.x[i]), s.t + fl.yaxis.l2p(t.y[i])];
        let best = 0, bestD = Infinity;
        for (let i = 0; i < t.x.length; i++) {
            const [x, y] = px(i), d = (x - s.l - s.w / 2) ** 2 + (y - s.t - s.h / 2) ** 2;
            if (d < bestD) { best = i; bestD = d; }
        }
        const [x, y] = px(best), r = gd.getBoundingClientRect();
        return [x - r.width / 2, y - r.height / 2];""", graph)
    ActionChains(browser).move_to_element_with_offset(graph, int(round(dx)), int(round(dy))).perform()
    card = wait_for(browser, "#map-tooltip", timeout=20)
    wait_until(lambda: card.text.strip(), what="the hover card's text")
    # what is painted on top at the card's centre: the card takes no pointer events (elementFromPoint
    # passes through it), so it takes them for this one look
    point, box, on_top = browser.execute_script("""
        const g = arguments[0].getBoundingClientRect(), b = document.querySelector('.dcc-tooltip-bounding-box');
        const c = arguments[1].getBoundingClientRect(), all = [b, ...b.querySelectorAll('*')];
        const before = all.map(e => e.style.pointerEvents);
        all.forEach(e => { e.style.pointerEvents = 'auto'; });
        const top = document.elementFromPoint(c.left + c.width / 2, c.top + c.height / 2);
        all.forEach((e, i) => { e.style.pointerEvents = before[i]; });
        return [[g.left + g.width / 2 + arguments[2], g.top + g.height / 2 + arguments[3]],
                b.getBoundingClientRect().toJSON(), b.contains(top)];""", graph, card, dx, dy)
    assert abs(box["left"] + box["width"] / 2 - point[0]) < 12 and abs(box["top"] + box["height"] / 2 - point[1]) < 12
    assert on_top  # nothing of the map covers the card


def test_url_state_restores_view(browser, server):
    browser.get(server + "/?emb=title&method=tsne&color=cluster&years=2014,2014")
    wait_until(lambda: points_on_map(browser) > 0, what="points")
    assert browser.find_element("css selector", "#map-method input[value='tsne']").is_selected()
    assert browser.find_element("css selector", "#map-color input[value='cluster']").is_selected()
    assert "Title" in browser.find_element("id", "map-emb").text


def test_missing_lake_says_how_to_build(browser, tmp_path):
    with serve_dashboard(tmp_path / "empty-lake", log=tmp_path / "server.log") as url:
        browser.get(url + "/")
        wait_for(browser, ".alert-warning")
        text = browser.find_element("css selector", ".alert-warning").text
        assert "No data lake yet" in text and "python -m pipeline build" in text


def test_a_large_map_answers_in_svg_first_then_becomes_webgl(browser, tmp_path):
    """Past lake.density.LARGE_MAP points: the page's first figure is the SVG sample over the density
    raster; once it is drawn, the browser asks for and draws the WebGL sample in its place."""
    from bench.synthetic_lake import write_synthetic_lake
    from lake.density import FIRST_VIEW_POINTS, LARGE_MAP, OVERLAY_POINTS

    lake = write_synthetic_lake(tmp_path / "large", n=LARGE_MAP + 20_000)
    # every figure the map shows, recorded in the page as Plotly draws it (the SVG one lives ≈ 0.6 s: a
    # test polling from outside saw it only when the scheduler let it)
    record = """window.atlasFigures = [];
    new MutationObserver(() => {
      const gd = document.querySelector('#map-graph .js-plotly-plot');
      if (!gd || !gd._fullData || !gd._fullData.length) return;
      const now = [gd._fullData[0].type, gd._fullData.reduce((s, t) => s + (t.customdata ? t.customdata.length : 0), 0)];
      const last = window.atlasFigures[window.atlasFigures.length - 1];
      if (!last || last[0] !== now[0] || last[1] !== now[1]) window.atlasFigures.push(now);
    }).observe(document, {childList: true, subtree: true});"""
    script = browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": record})
    try:
        with serve_dashboard(lake.root, log=tmp_path / "server.log") as url:
            browser.get_log("browser")
            browser.get(url + "/")
            seen, deadline = [], time.monotonic() + 60
            while seen[-1:] != [["scattergl", OVERLAY_POINTS]]:
                assert time.monotonic() < deadline, f"the WebGL sample never came: {seen[-3:]}"
                seen = browser.execute_script("return window.atlasFigures || [];")
                time.sleep(0.1)
            assert ["scatter", FIRST_VIEW_POINTS] in seen[:-1], seen  # the SVG figure was drawn first
            assert f"({OVERLAY_POINTS:,} drawn over their density)" in browser.find_element("id", "map-count").text
            assert browser.find_elements("css selector", "#map-graph .main-svg .imagelayer image")  # the raster under it
            assert console_errors(browser) == []
    finally:
        browser.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": script["identifier"]})


def test_navbar_search_shows_results_and_paging(browser, server):
    from selenium.webdriver.common.keys import Keys

    browser.get(server + "/categories")
    wait_for(browser, "#cat-grid .atlas-card")
    browser.get_log("browser")  # this test checks the search page's messages, not earlier pages'
    box = wait_for(browser, "#nav-search")
    box.send_keys("meteor shower over mountains")
    box.send_keys(Keys.ENTER)
    wait_until(lambda: "/search?" in browser.current_url, what="navigation to /search")
    wait_for(browser, "#search-results .atlas-hit", timeout=60)
    assert "/search?q=meteor+shower+over+mountains" in browser.current_url
    hits = browser.find_elements("css selector", "#search-results .atlas-hit")
    assert len(hits) == 10
    assert console_errors(browser) == []
    shot(browser, "search")
    first = hits[0].find_element("css selector", "a.atlas-hit-title").text
    browser.get(server + "/search?q=meteor+shower+over+mountains&mode=hybrid&page=2")
    wait_for(browser, "#search-results .atlas-hit")
    assert browser.find_elements("css selector", "#search-results .atlas-hit")[0].find_element("css selector", "a.atlas-hit-title").text != first
    browser.get(server + "/search?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E")
    wait_for(browser, "#search-results")
    assert browser.find_element("id", "search-q").get_attribute("value") == "<script>alert(1)</script>"
    # a search page with nothing to show yet (no query, or an error) still searches what is typed
    for start in ("/search", "/search?q=" + "x" * 1001):
        browser.get(server + start)
        box = wait_for(browser, "#search-q")
        box.send_keys(Keys.CONTROL, "a")  # typed over, not cleared first (clearing is a change of its own)
        box.send_keys("comet tail", Keys.ENTER)
        wait_until(lambda: "q=comet+tail" in browser.current_url, what=f"a search typed on {start[:20]}")
        wait_for(browser, "#search-results .atlas-hit", timeout=60)


def test_pictures_from_words_and_categories_of_an_upload(browser, server):
    """kind=image finds pictures from words; an uploaded picture gets look-alikes and zero-shot categories."""
    from tests.conftest import IMAGES

    browser.get(server + "/search?q=the+Moon%27s+craters&kind=image&mode=dense")
    wait_for(browser, "#search-results .atlas-hit", timeout=60)
    hits = browser.find_elements("css selector", "#search-results .atlas-hit")
    assert len(hits) == 10 and all(h.find_elements("css selector", "img.atlas-result-thumb") for h in hits)
    upload = browser.find_element("css selector", "#search-upload input[type=file]")
    upload.send_keys(str(IMAGES / "2014-01-20.jpg"))
    wait_for(browser, "#search-upload-categories .progress", timeout=60)
    bars = browser.find_elements("css selector", "#search-upload-categories .progress")
    names = [e.text for e in browser.find_elements("css selector", "#search-upload-categories .atlas-cat-name")]
    assert len(bars) == 5 and all(names)
    first = browser.find_element("css selector", "#search-results .atlas-hit a.atlas-hit-title")
    assert first.get_attribute("href").endswith("/entry/2014-01-20")  # in-pictures search: its own picture first
    assert console_errors(browser) == []
    shot(browser, "search_by_picture")


def test_a_refused_upload_says_why(browser, server, tmp_path):
    """dcc.Upload drops a file over its size limit or of another type without a callback: the line under
    the box says why, and empties again for a file the box takes."""
    from atlas.images import MAX_UPLOAD_BYTES
    from tests.conftest import IMAGES

    big, notes = tmp_path / "huge_photo.jpg", tmp_path / "notes.txt"
    big.write_bytes(b"\xff" * (MAX_UPLOAD_BYTES + 1024 * 1024))
    notes.write_text("not a picture")
    browser.get(server + "/search")
    upload = wait_for(browser, "#search-upload input[type=file]")
    note = browser.find_element("css selector", ".atlas-upload-refused")
    upload.send_keys(str(big))
    wait_until(lambda: "huge_photo.jpg was not sent" in note.text, what="the size refusal")
    assert f"up to {MAX_UPLOAD_BYTES // 2**20} MB" in note.text
    upload.send_keys(str(notes))
    wait_until(lambda: "text/plain is not accepted" in note.text, what="the type refusal")
    upload.send_keys(str(IMAGES / "2014-01-20.jpg"))
    wait_for(browser, "#search-upload-categories .progress", timeout=60)
    assert note.text == ""


def test_entry_without_thumbnail_shows_its_nasa_picture_or_an_offline_placeholder(browser, server):
    """2014-01-07 has no bundled thumbnail: the page asks for its NASA URL; offline, the placeholder shows."""
    nasa = "https://apod.nasa.gov/apod/image/1401/m7_fenyes_960.jpg"
    browser.get(server + "/entry/2014-01-07")
    img = wait_for(browser, "img.atlas-entry-img.atlas-remote")
    assert img.get_attribute("data-src") == nasa
    wait_until(lambda: "atlas-picture-offline" in (img.get_attribute("class") or ""), what="offline placeholder")
    assert img.get_attribute("data-failed-src") == nasa  # the browser did try the NASA URL
    assert img.get_attribute("src").endswith("/assets/picture-offline.svg")
    source = browser.find_element("id", "entry-picture-source").text
    assert "apod.nasa.gov" in source and ("©" in source or "credit" in source.lower())
    # a video's still comes from YouTube, and its placeholder says so (it said "Picture on apod.nasa.gov")
    browser.get(server + "/entry/2014-02-24")
    still = wait_for(browser, "img.atlas-entry-img.atlas-remote")
    assert still.get_attribute("data-src").startswith("https://img.youtube.com/")
    wait_until(lambda: "atlas-picture-offline" in (still.get_attribute("class") or ""), what="offline still")
    assert still.get_attribute("src").endswith("/assets/video-still-offline.svg")
    assert "img.youtube.com" in still.get_attribute("title")
    # search results and neighbour cards use the same rule: no grey box for pictures NASA has
    browser.get(server + "/search?q=star+cluster&image=no")
    wait_for(browser, "#search-results .atlas-hit", timeout=60)
    remote = browser.find_elements("css selector", "#search-results img.atlas-remote")
    assert remote and all(r.get_attribute("data-src").startswith("https://") for r in remote)
    shot(browser, "entry_remote_picture")


def test_oddities_gallery_thumbs_rerank_and_export(browser, server, downloads):
    browser.get(server + "/oddities")
    wait_for(browser, "#odd-gallery .atlas-oddity", timeout=60)
    cards = browser.find_elements("css selector", "#odd-gallery .atlas-oddity")
    assert len(cards) == 24 and all(c.find_element("css selector", ".atlas-why").text for c in cards)
    first = cards[0].find_element("css selector", "a.fw-semibold").text
    down = cards[0].find_elements("css selector", ".atlas-thumbs button")[1]
    down.click()  # "not interesting": the list re-ranks and the entry leaves the top
    wait_until(lambda: "re-ranked with your 1 mark" in browser.find_element("id", "odd-note").text, what="re-rank")
    wait_until(lambda: browser.find_elements("css selector", "#odd-gallery .atlas-oddity a.fw-semibold")[0].text != first,
               what="new first card")
    browser.find_element("id", "odd-export-csv").click()
    csv_path = wait_until(lambda: next(iter(downloads.glob("oddities-*.csv")), None), what="CSV download")
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) > 100 and rows[-1]["title"] == first  # the "not interesting" one is last
    assert console_errors(browser) == []
    shot(browser, "oddities")

    # "interesting": the list re-ranks with both marks and the card shows its thumb pressed
    liked = browser.find_elements("css selector", "#odd-gallery .atlas-oddity")[5]
    liked_title = liked.find_element("css selector", "a.fw-semibold").text
    liked.find_elements("css selector", ".atlas-thumbs button")[0].click()
    wait_until(lambda: "re-ranked with your 2 marks" in browser.find_element("id", "odd-note").text,
               what="the second re-rank")
    pressed = ("const card = [...document.querySelectorAll('#odd-gallery .atlas-oddity')]"
               ".find(c => c.querySelector('a.fw-semibold').textContent === arguments[0]);"
               "return card ? card.querySelector('.atlas-thumbs button').className : null;")
    wait_until(lambda: (c := browser.execute_script(pressed, liked_title)) and "btn-success" in c and "outline" not in c,
               what="the liked card on the first page with its thumb pressed")

    # paging: page 2 holds other entries; another detector's list starts again at its first page
    def titles() -> list[str]:  # read in one script: the gallery may be replaced while it is read
        return browser.execute_script("return [...document.querySelectorAll('#odd-gallery .atlas-oddity "
                                      "a.fw-semibold')].map(a => a.textContent)")

    page_one = titles()
    click_when_clear(browser, "//*[@id='odd-page']//a[normalize-space()='2']", what="the pager's page 2")
    wait_until(lambda: titles() and set(titles()).isdisjoint(page_one), what="page 2")
    assert browser.find_element("css selector", "#odd-page .page-item.active").text.strip().startswith("2")
    browser.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.3)
    browser.find_element("id", "odd-detector").click()
    option = wait_for(browser, "#odd-detector input[value='picture_vs_text_neighbours'], "
                               "input.dash-options-list-option-checkbox[value='picture_vs_text_neighbours']")
    browser.execute_script("arguments[0].closest('label, div, li').click()", option)
    wait_until(lambda: browser.find_element("css selector", "#odd-page .page-item.active").text.strip().startswith("1"),
               what="the pager back on page 1")
    wait_until(lambda: len(titles()) == 24 and "its text neighbours" in browser.execute_script(
        "return document.querySelector('#odd-gallery .atlas-why').textContent"), what="the other detector's first page")
    assert console_errors(browser) == []

    # "neighbours" opens the entry page at its text-vs-picture section (rendered after the page loads)
    link = browser.find_element("css selector", "#odd-gallery .atlas-oddity a[href$='#entry-compare']")
    browser.get(link.get_attribute("href"))
    wait_until(lambda: browser.execute_script(
        "const el = document.getElementById('entry-compare');"
        "const top = el ? el.getBoundingClientRect().top : -1;"
        "return window.scrollY > 0 && top > -5 && top < 200;"),  # at the top, or as far as the page scrolls
        what="the entry page scrolled to its text-vs-picture section")


#: Survey servers unreachable here; and Aladin Lite first asks the page's own server for a survey given by
#: its id (``P/DSS2/color/properties``), which answers 404 (it is no page), before it asks CDS.
OFFLINE_ALADIN = ("unistra.fr", "Failed to fetch", "Uncaught (in promise)", "/color/properties - Failed to load")


def test_sky_page_markers_and_click_to_entry(browser, server):
    from selenium.webdriver.common.action_chains import ActionChains

    browser.get_log("browser")
    browser.get(server + "/sky")
    wait_for(browser, "#sky-graph .js-plotly-plot")
    # entries on the map, each once: a Map selection left by an earlier test rings some of them in a trace
    # of its own (the same dates again)
    count = "const gd = document.querySelector('#sky-graph .js-plotly-plot'); if (!gd || !gd.data) return 0; " \
            "const dates = new Set(); gd.data.forEach(t => (t.customdata || []).forEach(c => dates.add(c[0]))); " \
            "return dates.size;"
    n = wait_until(lambda: browser.execute_script(count), what="sky markers")
    assert n > 10
    aladin = wait_until(lambda: browser.execute_script("return window.atlasSkyMarkers || 0;"), timeout=45,
                        what="Aladin Lite markers")
    assert aladin == n
    wait_until(lambda: "survey images cannot be loaded" in browser.find_element("id", "sky-aladin-status").text,
               what="offline note for the survey images")
    errors = [e for e in console_errors(browser) if not any(s in e for s in OFFLINE_ALADIN)]
    assert errors == []
    shot(browser, "sky")
    # away and back inside the app (no reload): the markers are drawn in the page's new sky view
    browser.find_element("link text", "Map").click()
    wait_for(browser, "#map-graph .js-plotly-plot")
    browser.execute_script("window.atlasSkyMarkers = 0;")
    browser.find_element("link text", "Sky").click()
    assert wait_until(lambda: browser.execute_script(
        "return window.atlasAladinEl === document.getElementById('sky-aladin') && window.atlasSkyMarkers;"),
        timeout=45, what="markers in the new sky view") == n
    # a click on an Aladin Lite marker opens its entry
    target = browser.execute_script("""
        const al = window.atlasAladin, src = window.atlasCatalog.getSources()[0];
        al.gotoRaDec(src.ra, src.dec); al.setFoV(1.0);
        const xy = al.world2pix(src.ra, src.dec);
        return {x: xy[0], y: xy[1], date: src.data.date};
    """)
    div = browser.find_element("id", "sky-aladin")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center', behavior: 'instant'})", div)
    time.sleep(1.5)
    rect = div.rect
    ActionChains(browser).move_to_element_with_offset(
        div, int(target["x"] - rect["width"] / 2), int(target["y"] - rect["height"] / 2)).click().perform()
    wait_until(lambda: browser.current_url.endswith(f"/entry/{target['date']}"), what="entry opened from Aladin")
    wait_for(browser, "#entry-objects a[href*='aladin.cds.unistra.fr']")
    # and a click on the all-sky map does too
    browser.get(server + "/sky")
    wait_until(lambda: browser.execute_script(count), what="sky markers")
    date = browser.execute_script("""
        const gd = document.querySelector('#sky-graph .js-plotly-plot');
        const i = gd.data.findIndex(t => t.customdata && t.customdata.length);
        const t = gd.data[i];
        gd.emit('plotly_click', {points: [{curveNumber: i, pointNumber: 0, pointIndex: 0, customdata: t.customdata[0]}]});
        return t.customdata[0][0];
    """)
    wait_until(lambda: browser.current_url.endswith(f"/entry/{date}"), what="entry opened from the sky map")


def test_sky_popup_shows_archive_text_as_text(browser, server):
    """Aladin Lite writes a marker's fields into its popup as HTML: a title with markup must show as text."""
    browser.get(server + "/sky")
    wait_until(lambda: browser.execute_script("return window.atlasSkyMarkers || 0;"), timeout=45,
               what="Aladin Lite markers")
    hostile = '<img src="x" onerror="window.atlasInjected = 1"> M31 & friends'
    status = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        window.atlasSky.showMarkers([{date: '2001-02-03', title: arguments[0], name: '<b>M31</b>',
                                      ra_deg: 10.68, dec_deg: 41.27}], 'sky-aladin').then(done);
    """, hostile)
    assert status.startswith("1 markers")
    popup = browser.execute_script("""
        const src = window.atlasCatalog.getSources()[0];
        window.atlasCatalog.onClick = 'showPopup';
        src.actionClicked();
        const el = document.querySelector('.aladin-popup');
        return {title: src.data.title, html: el ? el.innerHTML : '', text: el ? el.textContent : ''};
    """)
    assert popup["title"].startswith("&lt;img")
    assert "<img" not in popup["html"] and "<b>" not in popup["html"]
    assert hostile in popup["text"] and "<b>M31</b>" in popup["text"]
    time.sleep(0.5)
    assert browser.execute_script("return window.atlasInjected === undefined;")


def test_sky_cone_search_by_name(browser, server):
    from selenium.webdriver.common.keys import Keys

    browser.get(server + "/sky")
    wait_for(browser, "#cone-name")
    radius = browser.find_element("id", "cone-r").find_element("xpath", "..")  # the field says what it is
    assert radius.text.split() == ["radius", "°"]
    browser.find_element("id", "cone-name").send_keys("Orion Nebula")
    button = browser.find_element("id", "cone-go")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center', behavior: 'instant'})", button)
    button.click()
    wait_for(browser, "#cone-list li a")
    assert "2014-04-08" in {a.get_attribute("href")[-10:] for a in browser.find_elements("css selector", "#cone-list li a")}
    # numbers as people type them: decimals, a radius of 3, one out of range (the browser's step check
    # turned them into None, and the search used 1° or refused the position without saying why)
    results = browser.find_element("id", "cone-results")

    def cone(ra: str, dec: str, r: str, expect: str) -> None:
        for field, value in (("cone-name", ""), ("cone-ra", ra), ("cone-dec", dec), ("cone-r", r)):
            box = browser.find_element("id", field)
            box.send_keys(Keys.CONTROL, "a")
            box.send_keys(Keys.DELETE)
            if value:
                box.send_keys(value)
        button.click()
        wait_until(lambda: expect in results.text, what=expect)

    cone("83.82", "-5.39", "3", "within 3° of RA 83.820°, Dec -5.390°")
    cone("83.82", "-5.39", "500", "The radius must be between 0 and 180 degrees.")
    cone("400", "-5.39", "2.5", "Give an object name, or RA (0–360°)")


def test_galaxies_upload_results_aladin_and_download(browser, server, downloads, tmp_path, demo_lake):
    """Upload a galaxy → look-alikes with pictures, morphology beside the random baseline, markers in
    Aladin Lite; a catalogue galaxy's morphology neighbours; lasso on the morphology map → download."""
    from selenium.webdriver.common.keys import Keys

    from tests.galaxy_pictures import render

    browser.get_log("browser")
    browser.get(server + "/galaxies")
    wait_for(browser, "#gal-map .js-plotly-plot .gl-container, #gal-map .js-plotly-plot .scatterlayer", timeout=45)
    assert "300 Galaxy Zoo 2 galaxies" in browser.find_element("id", "gal-summary").text
    picture = tmp_path / "my-spiral.jpg"
    picture.write_bytes(render("spiral", seed=31_337))
    browser.find_element("css selector", "#gal-upload input[type=file]").send_keys(str(picture))
    wait_for(browser, "#gal-results .atlas-galaxy img", timeout=60)
    cards = browser.find_elements("css selector", "#gal-results .atlas-galaxy")
    assert len(cards) == 10 and sum("featured" in c.text for c in cards) >= 8
    assert "my-spiral.jpg" in browser.find_element("id", "gal-status").text
    table = browser.find_element("id", "gal-morphology").text
    assert "random 10" in table and "Featured or disk" in table and "whole collection" in table
    assert "random sets" in browser.find_element("id", "gal-sky-stats").text
    wait_until(lambda: browser.execute_script("return window.atlasGalaxyMarkers") == 10, timeout=60,
               what="neighbours marked in Aladin Lite")
    assert browser.execute_script("return document.querySelectorAll('#gal-aladin canvas').length") > 0
    shot(browser, "galaxies")
    # a catalogue galaxy (typed): its morphology neighbours, and itself marked too
    box = browser.find_element("id", "gal-objid")
    box.send_keys("8647474690312307154\n")
    wait_until(lambda: "Nearest to 8647474690312307154" in browser.find_element("id", "gal-status").text,
               what="morphology neighbours")
    wait_until(lambda: browser.execute_script("return window.atlasGalaxyMarkers") == 11, what="query + neighbours")
    # the same picture dropped again after picking a galaxy: its look-alikes again (dcc.Upload's contents
    # did not change, so the page used to ignore it)
    browser.find_element("css selector", "#gal-upload input[type=file]").send_keys(str(picture))
    wait_until(lambda: "my-spiral.jpg" in browser.find_element("id", "gal-status").text, what="the same upload again")
    wait_until(lambda: browser.execute_script("return window.atlasGalaxyMarkers") == 10, what="its look-alikes marked")
    # fewer of them: still the upload's look-alikes (the page used to go back to the typed galaxy)
    how_many = browser.find_element("id", "gal-k")
    how_many.send_keys(Keys.CONTROL, "a")
    how_many.send_keys("5")
    wait_until(lambda: browser.execute_script("return window.atlasGalaxyMarkers") == 5, what="5 look-alikes marked")
    assert "my-spiral.jpg" in browser.find_element("id", "gal-status").text
    # lasso on the morphology map → CSV of exactly those galaxies. Points carry their row of the map in
    # objid order; the expected objids are read from the lake's Parquet here, independently of the app.
    rows = browser.execute_script("""
        const gd = document.querySelector('#gal-map .js-plotly-plot');
        const t = gd._fullData.find(t => t.customdata && t.customdata.length >= 3);  // binary arrays decoded
        const pts = [0, 1, 2].map(i => ({curveNumber: t.index, pointNumber: i, pointIndex: i, customdata: t.customdata[i]}));
        gd.emit('plotly_selected', {points: pts});
        return pts.map(p => p.customdata);
    """)
    maps = pq.read_table(demo_lake / "current" / "galaxy_maps.parquet").to_pandas()
    in_order = sorted(maps[maps.space == "morphology"].objid)
    picked = sorted(in_order[int(r)] for r in rows)
    wait_until(lambda: "3 galaxies selected" in browser.find_element("id", "gal-selection-count").text, what="selection")
    got = download_csv(browser, downloads, "gal-dl-csv", "gz2_selection.csv")
    assert sorted(r["objid"] for r in got) == picked and "p_smooth" in got[0]
    # a galaxy that is not in the catalogue: a warning, and the last galaxies' markers leave the sky too
    box = browser.find_element("id", "gal-objid")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys("1234567890\n")
    wait_until(lambda: browser.execute_script("return window.atlasGalaxyMarkers") == 0, what="markers cleared")
    assert browser.execute_script("const v = window.atlasGalaxyView;"
                                  "return v.query.getSources().length + v.near.getSources().length") == 0
    errors = [e for e in console_errors(browser) if not any(s in e for s in OFFLINE_ALADIN)]
    assert errors == []
