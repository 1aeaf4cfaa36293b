"""People's feedback on entries ("interesting" / "not interesting"), kept outside the lake.

A small SQLite database (one file per lake, in :func:`atlas.environment.state_dir`): it survives
rebuilds (labels are keyed by entry date, which rebuilds keep) and many concurrent writers — WAL mode,
a busy timeout, and one short transaction per label, so two people clicking at once both land. Every
label is appended (with who and when); a person's current label for an entry is their latest one,
and ``None`` (clearing) is a label too.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from atlas import environment

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    entry_date TEXT NOT NULL,
    label INTEGER,            -- 1 interesting, 0 not interesting, NULL cleared
    user TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_by_entry ON feedback (user, entry_date, id);
"""
MAX_USER_CHARS = 64


class FeedbackError(ValueError):
    """A label that cannot be stored as given; the message says why."""


def default_path(lake_root: Path) -> Path:
    """The feedback file of one lake: named after the lake's resolved path, so lakes never mix."""
    key = hashlib.sha1(str(Path(lake_root).resolve()).encode()).hexdigest()[:12]
    return environment.state_dir() / f"feedback-{key}.sqlite"


class FeedbackStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            con.execute("PRAGMA busy_timeout=30000")
            yield con
        finally:
            con.close()

    def add(self, *, date: str, interesting: bool | None, user: str = "anonymous") -> None:
        """Store one label (``None`` clears this person's label of the entry)."""
        try:
            day = dt.date.fromisoformat(date).isoformat()
        except (TypeError, ValueError):
            raise FeedbackError(f"{date!r} is not a date like 2014-01-31") from None
        user = (user or "anonymous").strip()[:MAX_USER_CHARS] or "anonymous"
        label = None if interesting is None else int(bool(interesting))
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            con.execute("INSERT INTO feedback (entry_date, label, user, created_at) VALUES (?, ?, ?, ?)",
                        (day, label, user, dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")))
            con.execute("COMMIT")

    def labels(self, *, user: str | None = None) -> dict[str, bool]:
        """Current labels, date → interesting; one person's, or everyone's latest when ``user`` is None."""
        where, params = ("WHERE user = ?", (user,)) if user else ("", ())
        sql = ("SELECT entry_date, label FROM feedback f WHERE id = (SELECT max(id) FROM feedback g "
               f"WHERE g.entry_date = f.entry_date {'AND g.user = f.user' if user else ''}) "
               f"{where.replace('WHERE', 'AND')}")
        with self._connect() as con:
            rows = con.execute(sql, params).fetchall()
        return {d: bool(v) for d, v in rows if v is not None}

    def history(self, *, limit: int | None = None) -> list[dict[str, object]]:
        """Every label ever given (for export), oldest first; with ``limit``, only the newest ``limit``
        (labels are appended by anyone who can reach the app, so an export must have a bound)."""
        sql = "SELECT entry_date, label, user, created_at FROM feedback ORDER BY id DESC"
        with self._connect() as con:
            rows = con.execute(sql + (" LIMIT ?" if limit is not None else ""),
                               (int(limit),) if limit is not None else ()).fetchall()[::-1]
        return [{"date": d, "interesting": None if v is None else bool(v), "user": u, "at": t} for d, v, u, t in rows]
