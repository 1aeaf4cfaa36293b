"""Every environment variable Cosmic Atlas reads, in one place, read when asked (never at import).

Reading at call time means a test, a worker or a long-running server sees the value in force when it
acts, and a newcomer finds every knob here: nothing else in the project calls ``os.environ``.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Points every command and the app at a lake directory (``--lake`` wins over it).
LAKE_ENV = "COSMIC_ATLAS_LAKE"
STATE_ENV = "COSMIC_ATLAS_STATE"
#: Working copies of lakes on object storage (``--lake s3://bucket/prefix``).
CACHE_ENV = "COSMIC_ATLAS_CACHE"
S3_ENDPOINT_ENV = "COSMIC_ATLAS_S3_ENDPOINT"

NASA_APOD_URL = "https://api.nasa.gov/planetary/apod"
SDSS_CUTOUT_URL = "https://skyserver.sdss.org/dr18/SkyServerWS/ImgCutout/getjpeg"
SIMBAD_TAP_URL = "https://simbad.cds.unistra.fr/simbad/sim-tap"
SESAME_URLS = ("https://cds.unistra.fr/cgi-bin/nph-sesame/", "http://vizier.cfa.harvard.edu/viz-bin/nph-sesame/")


def _get(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def lake_dir() -> Path | str | None:
    """``$COSMIC_ATLAS_LAKE`` when set (a directory, or an ``s3://bucket/prefix`` URL kept as text);
    None means the repository's ``lake/data``."""
    value = _get(LAKE_ENV)
    if value and value.startswith("s3://"):
        return value
    return Path(value).expanduser() if value else None


def cache_dir() -> Path:
    """Where working copies of object-store lakes live: ``$COSMIC_ATLAS_CACHE``, else the XDG cache."""
    value = _get(CACHE_ENV)
    if value:
        return Path(value).expanduser()
    return Path(_get("XDG_CACHE_HOME") or str(Path.home() / ".cache")) / "cosmic-atlas"


def s3_endpoint() -> str | None:
    """Endpoint of an S3-compatible server (``$COSMIC_ATLAS_S3_ENDPOINT``, else ``$AWS_ENDPOINT_URL``);
    None means Amazon S3 itself."""
    return _get(S3_ENDPOINT_ENV) or _get("AWS_ENDPOINT_URL")


def aws_region() -> str | None:
    """The object store's region (``$AWS_REGION``, else ``$AWS_DEFAULT_REGION``); None: pyarrow's default."""
    return _get("AWS_REGION") or _get("AWS_DEFAULT_REGION")


def state_dir() -> Path:
    """Where people's own data lives (feedback labels): ``$COSMIC_ATLAS_STATE``, else the XDG state
    directory. Never inside a lake: lakes are rebuilt and may be read-only."""
    value = _get(STATE_ENV)
    if value:
        return Path(value).expanduser()
    base = _get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "cosmic-atlas"


def nasa_api_key() -> str:
    """``$NASA_API_KEY``, else NASA's shared ``DEMO_KEY`` (30 requests an hour)."""
    return _get("NASA_API_KEY") or "DEMO_KEY"


def nasa_api_url() -> str:
    return _get("NASA_APOD_URL") or NASA_APOD_URL


def gz2_cutout_url() -> str:
    """Cutout service for galaxy pictures (``$GZ2_CUTOUT_URL``; default SDSS SkyServer DR18)."""
    return _get("GZ2_CUTOUT_URL") or SDSS_CUTOUT_URL


def simbad_url() -> str:
    return _get("SIMBAD_TAP_URL") or SIMBAD_TAP_URL


def sesame_urls() -> list[str]:
    """``$SESAME_URL`` (comma-separated mirrors), else CDS and its Harvard mirror."""
    value = _get("SESAME_URL")
    return [u.strip() for u in value.split(",") if u.strip()] if value else list(SESAME_URLS)


#: Lance's compute threads (its own variable): vector and full-text searches run on them.
LANCE_THREADS_ENV = "LANCE_CPU_THREADS"


def lances_own_threads(cpus: int) -> int:
    """The compute threads Lance picks by itself on ``cpus`` cores: all but the two it keeps for I/O, at
    least one."""
    return max(cpus - 2, 1)


def lance_threads(cpus: int) -> int:
    """The compute threads :func:`default_lance_threads` gives Lance on ``cpus`` cores: Lance's own
    choice (:func:`lances_own_threads`), raised to two where two cores exist."""
    return max(lances_own_threads(cpus), min(cpus, 2))


def default_lance_threads() -> int:
    """Sets ``$LANCE_CPU_THREADS`` by :func:`lance_threads` unless it is set already (a value set
    wins). Why: Lance keeps two cores for I/O, so on a 2-core machine a search ran its probed partitions
    on one thread while the lake's indexes sit in memory and leave the I/O threads idle; with two, a
    filtered search of 10M vectors took 47-52 → 32-40 ms at 40 probes and 60-64 → 41-44 ms at the 55
    shipped now, an unfiltered one 32-34 → 21-23 ms and 43 → 28 ms, the same rows (bench/lance_threads.py;
    BENCHMARKS.md). Lance reads the variable once per process, at its first query, so this runs before
    anything opens a table (``lake.vectors``). Returns the count in force."""
    if _get(LANCE_THREADS_ENV) is None:
        os.environ[LANCE_THREADS_ENV] = str(lance_threads(usable_cpus()))
    return int(os.environ[LANCE_THREADS_ENV])


def usable_cpus() -> int:
    """The cores this process may run on (its affinity where the OS tells it), at least one: the build's
    default ``--threads`` and Lance's compute threads (:func:`lance_threads`)."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
