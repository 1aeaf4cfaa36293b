"""Every Dash component id used by the app, as named constants, grouped by page.

Why one module: a layout and the callbacks that read or write its components must spell each id the
same way; a typo in a string literal only shows up at run time, as a callback that silently never fires.
With the ids here, a typo is a NameError/AttributeError at import (and a linter finding), renaming an id
is a one-line change, and the browser tests (``tests/test_browser.py``) can import the same names
instead of repeating the strings.

This module imports nothing from Dash so that tests and tools can use it without building the app
(it registers no page). The string values themselves are what the browser tests select on: change a
value only together with ``tests/test_browser.py``.
"""

from __future__ import annotations

from typing import Final


class App:
    """The app shell in ``app.py``: present on every page."""

    NAV_SEARCH: Final = "nav-search"
    #: The navbar's toggler and what it folds on a narrow screen (the links and the search).
    NAV_TOGGLE: Final = "nav-toggle"
    NAV_COLLAPSE: Final = "nav-collapse"
    #: Dash pages' own location component (dash.page_container): its pathname changes with every page.
    PAGES_LOCATION: Final = "_pages_location"
    #: Session store with the dates selected on the Map page; the Sky page highlights them.
    MAP_SELECTION: Final = "map-selection"


class Map:
    """Map page (``/``, pages/home.py)."""

    EMB: Final = "map-emb"
    METHOD: Final = "map-method"
    COLOR: Final = "map-color"
    CATS: Final = "map-cats"
    YEARS: Final = "map-years"
    COUNT: Final = "map-count"
    NOTE: Final = "map-note"
    GRAPH: Final = "map-graph"
    THINNED: Final = "map-thinned"
    FIT: Final = "map-fit"
    #: Set in the browser once a large map's first (SVG) figure is drawn and the page is idle: the server
    #: then sends the WebGL figure (pages/home.py upgrade_map, assets/atlas_clientside.js).
    UPGRADE: Final = "map-upgrade"
    TOOLTIP: Final = "map-tooltip"
    CATEGORY_COUNTS: Final = "map-category-counts"
    PAGE_SELECTION: Final = "map-page-selection"
    GO: Final = "map-go"
    SELECTION_TITLE: Final = "map-selection-title"
    DL_CSV: Final = "map-dl-csv"
    DL_PARQUET: Final = "map-dl-parquet"
    CLEAR: Final = "map-clear"
    TABLE: Final = "map-table"
    #: Holds the selection table, mounted only once there is a selection (see pages/home.py).
    TABLE_HOLDER: Final = "map-table-holder"
    DOWNLOAD: Final = "map-download"
    CLUSTER_PICK: Final = "map-cluster-pick"
    CLUSTER_LINKS: Final = "map-cluster-links"


class Categories:
    """Categories page (``/categories``)."""

    YEARS: Final = "cat-years"
    COUNTS: Final = "cat-counts"
    YEARS_CHART: Final = "cat-years-chart"
    CONFIDENCE: Final = "cat-confidence"
    AGREEMENT: Final = "cat-agreement"
    PICK: Final = "cat-pick"
    GRID_COUNT: Final = "cat-grid-count"
    GRID: Final = "cat-grid"
    PAGE: Final = "cat-page"


class Oddities:
    """Oddities page (``/oddities``): anomaly gallery with feedback."""

    DETECTOR: Final = "odd-detector"
    CATS: Final = "odd-cats"
    DATES: Final = "odd-dates"
    PAGE: Final = "odd-page"
    NOTE: Final = "odd-note"
    GALLERY: Final = "odd-gallery"
    EXPORT: Final = "odd-export"
    EXPORT_CSV: Final = "odd-export-csv"
    EXPORT_PARQUET: Final = "odd-export-parquet"
    DOWNLOAD: Final = "odd-download"
    USER: Final = "odd-user"
    VERSION: Final = "odd-version"
    THUMB: Final = "odd-thumb"  # pattern-matching type: {"type": THUMB, "date": …, "label": "up" | "down"}


class Entry:
    """Entry page (``/entry/<date>``)."""

    TITLE: Final = "entry-title"
    PICTURE_SOURCE: Final = "entry-picture-source"
    COMPARE: Final = "entry-compare"
    OBJECTS: Final = "entry-objects"
    TABS: Final = "entry-tabs"


class Metrics:
    """Metrics page (``/metrics``)."""

    RUN: Final = "metrics-run"
    STAGES: Final = "metrics-stages"
    TABLE: Final = "metrics-table"
    SAMPLES: Final = "metrics-samples"


class Search:
    """Search page (``/search``)."""

    Q: Final = "search-q"
    GO_BTN: Final = "search-go-btn"
    MODE: Final = "search-mode"
    KIND: Final = "search-kind"
    CATS: Final = "search-cats"
    DATES: Final = "search-dates"
    IMAGE: Final = "search-image"
    PAGE: Final = "search-page"
    UPLOAD: Final = "search-upload"
    UPLOAD_CATEGORIES: Final = "search-upload-categories"
    RESULTS: Final = "search-results"
    GO: Final = "search-go"


class Sky:
    """Sky page (``/sky``): the all-sky map, the cone search and the Aladin Lite view."""

    CATS: Final = "sky-cats"
    YEARS: Final = "sky-years"
    COUNT: Final = "sky-count"
    GRAPH: Final = "sky-graph"
    ALADIN: Final = "sky-aladin"
    ALADIN_STATUS: Final = "sky-aladin-status"
    SOURCES: Final = "sky-sources"
    GO: Final = "sky-go"
    CONE_NAME: Final = "cone-name"
    CONE_RA: Final = "cone-ra"
    CONE_DEC: Final = "cone-dec"
    CONE_RADIUS: Final = "cone-r"
    CONE_GO: Final = "cone-go"
    CONE_RESULTS: Final = "cone-results"
    CONE_LIST: Final = "cone-list"


class Galaxies:
    """Galaxies page (``/galaxies``): Galaxy Zoo 2 look-alikes, morphology neighbours, map and sky."""

    SUMMARY: Final = "gal-summary"
    UPLOAD: Final = "gal-upload"
    OBJID: Final = "gal-objid"
    EXAMPLES: Final = "gal-examples"
    K: Final = "gal-k"
    SPACE: Final = "gal-space"
    STATUS: Final = "gal-status"
    MORPHOLOGY: Final = "gal-morphology"
    SKY_STATS: Final = "gal-sky-stats"
    RESULTS: Final = "gal-results"
    ALADIN: Final = "gal-aladin"
    ALADIN_STATUS: Final = "gal-aladin-status"
    SOURCES: Final = "gal-sources"
    ASKED: Final = "gal-asked"
    MAP_SPACE: Final = "gal-map-space"
    MAP: Final = "gal-map"
    MAP_KEY: Final = "gal-map-key"
    SELECTION: Final = "gal-selection"
    SELECTION_COUNT: Final = "gal-selection-count"
    DL_CSV: Final = "gal-dl-csv"
    DL_PARQUET: Final = "gal-dl-parquet"
    DOWNLOAD: Final = "gal-download"


GROUPS: Final = (App, Map, Categories, Entry, Metrics, Search, Sky, Oddities, Galaxies)


def all_ids() -> dict[str, str]:
    """Every id as ``{"Group.NAME": "id-string"}``; lets a test check that no two names share a value."""
    return {f"{group.__name__}.{name}": value for group in GROUPS
            for name, value in vars(group).items() if name.isupper() and isinstance(value, str)}
