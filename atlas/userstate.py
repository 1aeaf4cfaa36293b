"""People's feedback on entries ("interesting" / "not interesting"), kept outside the lake.

A small SQLite database (one file per lake, in :func:`atlas.environment.state_dir`, named after the
lake's id: :func:`default_path`): it survives rebuilds and moves of the lake (labels are keyed by entry
date, which rebuilds keep) and many concurrent writers — WAL mode,
a busy timeout, and one short transaction per label, so two people clicking at once both land. Every
label is appended (with who and when); a person's current label for an entry is their latest one,
and ``None`` (clearing) is a label too.

Without a person named, the list is re-ranked by everyone's labels as votes: each person's current
label of an entry counts once, and an entry is "interesting" when more people say so than not (a tie
says nothing). One visitor's ✕ is one vote, not everyone's answer.

Anyone who reaches the app can click, so superseded labels are pruned: every :data:`PRUNE_EVERY` labels,
a person's earlier labels of an entry they labelled again, beyond the newest :data:`KEEP_SUPERSEDED`
rows, are deleted. Current labels are never pruned, so what re-ranks the list and what the export's newest
rows show do not change, and a thumb clicked a million times costs a bounded file. Current labels under
ever new names are not bounded here (each is someone's label): a public server wants a rate limit in
front of ``POST /api/feedback``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from atlas import environment, signing
from atlas.files import write_bytes

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    entry_date TEXT NOT NULL,
    label INTEGER,            -- 1 interesting, 0 not interesting, NULL cleared
    user TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_by_entry ON feedback (user, entry_date, id);
CREATE INDEX IF NOT EXISTS feedback_latest ON feedback (entry_date, id);
CREATE TABLE IF NOT EXISTS superseded (  -- labels a later one of the same person and entry replaced
    id INTEGER PRIMARY KEY
);
-- kept by the file itself, so that every writer lists what it supersedes (also code of an earlier release
-- still serving beside a newer one); HAVING: no row when nothing is superseded (a NULL id would be given one)
CREATE TRIGGER IF NOT EXISTS feedback_supersedes AFTER INSERT ON feedback BEGIN
    INSERT OR IGNORE INTO superseded (id) SELECT max(id) FROM feedback
    WHERE user = NEW.user AND entry_date = NEW.entry_date AND id < NEW.id HAVING max(id) IS NOT NULL;
END;
CREATE TABLE IF NOT EXISTS carried (   -- a labels' file this one was copied from, and its last row copied
    source TEXT PRIMARY KEY,
    last_id INTEGER NOT NULL
);
"""
MAX_USER_CHARS = 64
#: ``PRAGMA user_version`` of a labels' file whose ``superseded`` table lists every superseded label.
SUPERSEDED_LISTED = 1
#: superseded labels kept beyond the current ones (the newest rows), and how often the rest are pruned
KEEP_SUPERSEDED = 100_000
PRUNE_EVERY = 1_000


class FeedbackError(ValueError):
    """A label that cannot be stored as given; the message says why."""


class FeedbackUnavailable(RuntimeError):
    """The labels' database cannot be opened or written (a read-only home, a full disk): the message
    says where it is and how to move it."""

    #: what a person who clicked is told (the API's 503, the Oddities page): the fix, without the server's
    #: paths or OS errors, which go to the server's log
    public_message = (f"people's labels cannot be stored on this server (the server log says why); its administrator "
                      f"sets {environment.STATE_ENV} to a folder the server can write")

    def __init__(self, message: str, *, public: str | None = None) -> None:
        super().__init__(message)
        if public is not None:
            self.public_message = public


#: What a person is told when the labels' file is damaged (the server's log names it).
DAMAGED_MESSAGE = ("people's labels cannot be read on this server: its administrator moves the damaged labels' "
                   "file aside (the server log names it)")
#: What a person is told while another writer holds the database past the busy timeout.
BUSY_MESSAGE = "people's labels are being written by many at once; try again in a moment"


def default_path(lake_root: Path, *, lake_id: str | None = None) -> Path:
    """The feedback file of one lake.

    Named after the lake's id (:data:`lake.manifest.LAKE_ID`, which every build of a lake carries on, and
    which a copied or moved lake keeps), so labels follow the lake when it moves: they used to be named
    after its path, and a lake moved to another disk, or mounted elsewhere in a container, lost them. A
    lake without an id (published before ids) keeps the file named after its path. The first time a lake
    is opened by id, the labels of the last lake seen at this path are copied in (the path's file of
    old, or the file of the lake the path held before it was built afresh), so neither an upgrade nor a
    lake deleted and built again at the same place starts with no labels. Labels given in the old file
    after the copy (by workers still serving the lake before) are carried over by
    :meth:`FeedbackStore._catch_up`."""
    state = environment.state_dir()
    path_key = hashlib.sha1(str(Path(lake_root).resolve()).encode()).hexdigest()[:12]
    by_path = state / f"feedback-{path_key}.sqlite"
    if not lake_id:
        return by_path
    by_id = _by_id(state, lake_id)
    pointer = state / f"feedback-{path_key}.lake"  # the id of the lake last opened at this path
    try:
        earlier = pointer.read_text().strip()
    except OSError:
        earlier = ""
    if not by_id.exists():
        for source in (_by_id(state, earlier) if earlier else None, by_path):
            if source is not None and source.is_file() and source.stat().st_size:
                if not _copy_labels(source, by_id):
                    return source  # (damaged, or no room for a copy) the store says what is wrong with it
                break
    if earlier != lake_id:
        try:
            state.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_bytes(pointer, lake_id.encode())
        except OSError as exc:  # the store says what to do when the folder is not writable
            log.warning("could not record the lake id beside the labels (%s)", exc)
    return by_id


def _by_id(state: Path, lake_id: str) -> Path:
    """The labels' file of the lake ``lake_id``: a uuid's hex digits name it as they are, anything else hashed."""
    key = lake_id if re.fullmatch(r"[0-9a-f]{32}", lake_id) else hashlib.sha1(lake_id.encode()).hexdigest()[:32]
    return state / f"feedback-lake-{key}.sqlite"


def _copy_labels(source: Path, target: Path) -> bool:
    """Copy a labels' database with SQLite's backup (consistent while others write to it) and put it in
    place only if no other process did first (a hard link refuses an existing name: two workers opening
    the lake at once must not replace each other's copy, and labels written to the first meanwhile).
    False when it could not be copied: the labels stay where they are, to be used from there."""
    tmp = target.with_name(f".tmp-{target.name}-{os.getpid()}")
    try:
        with contextlib.closing(sqlite3.connect(source, timeout=30)) as src, \
                contextlib.closing(sqlite3.connect(tmp)) as dst:
            src.backup(dst)
            # where the copy came from and how far: labels given there by a worker still serving the
            # lake before are carried over later (FeedbackStore._catch_up)
            # the source's own sources stay: a worker may move on from the lake before straight to this one
            dst.executescript(_SCHEMA)
            dst.execute("INSERT OR REPLACE INTO carried (source, last_id) "
                        "VALUES (?, (SELECT coalesce(max(id), 0) FROM feedback))", (str(Path(source).resolve()),))
            dst.commit()
        os.chmod(tmp, 0o600)
        try:
            os.link(tmp, target)
            log.info("people's labels of %s copied to %s (the lake's own file from now on)", source, target)
        except FileExistsError:
            pass
        return True
    except (OSError, sqlite3.Error) as exc:  # the old file stays as it was: nothing is lost
        log.warning("could not copy people's labels from %s to %s (%s); they are used where they are",
                    source, target, exc)
        return False
    finally:
        tmp.unlink(missing_ok=True)


def _day(date: str) -> str:
    try:
        return dt.date.fromisoformat(date).isoformat()
    except (TypeError, ValueError):
        raise FeedbackError(f"{date!r} is not a date like 2014-01-31") from None


def _user(user: str | None) -> str:
    """A person's name as stored and looked up: trimmed; longer than :data:`MAX_USER_CHARS` characters is
    refused (cut, two names sharing their start would be one person)."""
    if user is not None and not isinstance(user, str):
        raise FeedbackError("user must be a string")
    name = (user or "").strip() or "anonymous"
    if len(name) > MAX_USER_CHARS:
        raise FeedbackError(f"user is {len(name)} characters; the limit is {MAX_USER_CHARS}")
    return name


def pseudonym(user: str) -> str:
    """How a person appears in a public export of the marks: the same name gives the same pseudonym, so
    marks can still be grouped by person, but the name is not shown. The Oddities page names each
    browser by a random id, and anyone holding that id can mark (and read) as that browser; the
    export is public, so it must not list the ids. Keyed with this machine's secret (HMAC): a plain
    hash of a name people choose (an e-mail address, "anonymous") is undone by hashing guesses, and
    would link one person across servers."""
    return "u-" + signing.sign(b"export pseudonym\0" + _user(user).encode()).hex()[:12]


class FeedbackStore:
    def __init__(self, path: Path, *, keep_superseded: int = KEEP_SUPERSEDED, prune_every: int = PRUNE_EVERY) -> None:
        self.path = Path(path)
        self.keep_superseded, self.prune_every = int(keep_superseded), max(1, int(prune_every))
        try:  # the file holds the browsers' ids, which are enough to mark as them: its owner's only
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.path.touch(mode=0o600, exist_ok=True)
        except OSError as exc:
            raise self._unavailable(exc) from exc
        with self._connect() as con:
            mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":  # a file system without shared memory (NFS and the like)
                log.warning("the labels' database %s is not in WAL mode (%s): keep it on a local disk", self.path, mode)
            con.executescript(_SCHEMA)
            if con.execute("PRAGMA user_version").fetchone()[0] < SUPERSEDED_LISTED:
                self._list_superseded(con)
        self._catch_up()
        log.info("people's labels are kept in %s", self.path)

    @staticmethod
    def _list_superseded(con: sqlite3.Connection) -> None:
        """List the superseded labels of a file made before they were listed as they were given (once:
        one pass over the whole history)."""
        con.execute("BEGIN IMMEDIATE")
        if con.execute("PRAGMA user_version").fetchone()[0] < SUPERSEDED_LISTED:  # another process did meanwhile
            con.execute("INSERT OR IGNORE INTO superseded (id) SELECT id FROM feedback "
                        "WHERE id NOT IN (SELECT max(id) FROM feedback GROUP BY user, entry_date)")
            con.execute(f"PRAGMA user_version = {SUPERSEDED_LISTED}")
        con.execute("COMMIT")

    def _catch_up(self) -> None:
        """Carry over the labels given in the files this one was copied from since the copy: while an app's
        workers move to a new lake at the same path one by one, those still serving the lake before write
        to its file. Each worker catches up when it opens this file, so the last one to move brings
        everything. A label is skipped where the same person labelled the entry here at the same time or
        later (their newer label stays current; one that came by two paths, through the lake in between
        and straight from the one before it, is carried once). One transaction per source: two workers
        catching up at once copy each row once. Best effort: a source that cannot be read now is tried
        again at the next open, and the labels already here stay usable."""
        with self._connect() as con:
            sources = con.execute("SELECT source, last_id FROM carried").fetchall()
        for source, last_id in sources:
            path = Path(source)
            if not path.is_file() or path.resolve() == self.path.resolve():
                continue
            try:
                self._carry(path, last_id)
            except (sqlite3.Error, FeedbackUnavailable) as exc:
                log.warning("labels given in %s since its copy are not carried over yet (%s)", path, exc)

    def _carry(self, source: Path, last_id: int) -> None:
        # mode=rw: read where it is; a file gone since the check above is not created again
        with contextlib.closing(sqlite3.connect(f"{source.as_uri()}?mode=rw", uri=True, timeout=30)) as src:
            rows = src.execute("SELECT id, entry_date, label, user, created_at FROM feedback WHERE id > ? ORDER BY id",
                               (last_id,)).fetchall()
        if not rows:
            return
        carried = 0
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            done = con.execute("SELECT last_id FROM carried WHERE source = ?", (str(source),)).fetchone()[0]
            for row_id, day, label, user, at in rows:
                if row_id <= done or con.execute(
                        "SELECT 1 FROM feedback WHERE user = ? AND entry_date = ? AND created_at >= ? LIMIT 1",
                        (user, day, at)).fetchone():
                    continue
                self._insert(con, day, label, user, at)
                carried += 1
            con.execute("UPDATE carried SET last_id = max(last_id, ?) WHERE source = ?", (rows[-1][0], str(source)))
            con.execute("COMMIT")
        if carried:
            log.info("%d labels given in %s since its copy carried over to %s", carried, source, self.path)

    def _unavailable(self, exc: Exception) -> FeedbackUnavailable:
        text = str(exc).lower()
        if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
            return FeedbackUnavailable(f"the labels' database {self.path} stayed locked past the 30 s timeout "
                                       f"({exc})", public=BUSY_MESSAGE)
        if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
            return FeedbackUnavailable(f"the labels' database {self.path} is damaged or not a database ({exc}): "
                                       "move it aside (the server starts a new one) and recover what it held "
                                       "with the sqlite3 shell's .recover", public=DAMAGED_MESSAGE)
        return FeedbackUnavailable(f"people's labels cannot be kept in {self.path} ({type(exc).__name__}: {exc}); "
                                   f"set {environment.STATE_ENV} to a folder this server can write")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc
        try:
            con.execute("PRAGMA busy_timeout=30000")
            yield con
        # read-only file, full disk, locked past the timeout (OperationalError); a damaged file or one
        # that is not a database (DatabaseError)
        except sqlite3.DatabaseError as exc:
            raise self._unavailable(exc) from exc
        finally:
            con.close()

    def _insert(self, con: sqlite3.Connection, day: str, label: int | None, user: str, at: str | None = None) -> None:
        """Append one label (inside the caller's transaction; ``at``: when it was given, default now; the
        file's trigger lists the one it replaces as superseded), pruning the history when its id says so."""
        cur = con.execute("INSERT INTO feedback (entry_date, label, user, created_at) VALUES (?, ?, ?, ?)",
                          (day, label, user, at or dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")))
        if cur.lastrowid % self.prune_every == 0:
            self._prune(con)

    def _prune(self, con: sqlite3.Connection) -> None:
        """Delete superseded labels older than the newest ``keep_superseded`` rows; current ones stay.
        They are listed as they are superseded (the file's trigger), so a prune reads only them: the query
        that found them among every label took ≈ 0.3 s, inside the write lock, on a file of 300,000."""
        cutoff = con.execute("SELECT max(id) FROM feedback").fetchone()[0] - self.keep_superseded
        deleted = con.execute("DELETE FROM feedback WHERE id IN (SELECT id FROM superseded WHERE id <= ?)",
                              (cutoff,)).rowcount
        con.execute("DELETE FROM superseded WHERE id <= ?", (cutoff,))
        if deleted:
            log.info("feedback history pruned: %d superseded labels deleted", deleted)

    def add(self, *, date: str, interesting: bool | None, user: str = "anonymous") -> None:
        """Store one label (``None`` clears this person's label of the entry)."""
        day, user = _day(date), _user(user)
        label = None if interesting is None else int(bool(interesting))
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            self._insert(con, day, label, user)
            con.execute("COMMIT")

    def toggle(self, *, date: str, interesting: bool, user: str = "anonymous") -> bool | None:
        """A thumb clicked: set this person's label of the entry, or clear it when it is already that.
        Read and written in one transaction, so a quick double click sets and then clears (two
        transactions could both read "unlabelled" and set it twice). Returns the label now stored."""
        day, user = _day(date), _user(user)
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            row = con.execute("SELECT label FROM feedback WHERE user = ? AND entry_date = ? ORDER BY id DESC LIMIT 1",
                              (user, day)).fetchone()
            label = None if row is not None and row[0] == int(interesting) else int(interesting)
            self._insert(con, day, label, user)
            con.execute("COMMIT")
        return None if label is None else bool(label)

    def labels(self, *, user: str | None = None) -> dict[str, bool]:
        """Current labels, date → interesting, the most recently given last; one person's, or when
        ``user`` is None everyone's as votes (each person's current label counts once; more "yes" than
        "no" is interesting, more "no" is not, a tie is no label). SQLite takes a bare column from the
        row that holds ``max(id)``."""
        if user:
            sql = ("SELECT entry_date, label, max(id) AS last FROM feedback WHERE user = ? "
                   "GROUP BY entry_date ORDER BY last")
            with self._connect() as con:
                rows = con.execute(sql, (_user(user),)).fetchall()
            return {d: bool(v) for d, v, _ in rows if v is not None}
        sql = ("SELECT entry_date, sum(label = 1), sum(label = 0), max(last) AS newest FROM ("
               "SELECT entry_date, label, max(id) AS last FROM feedback GROUP BY user, entry_date"
               ") GROUP BY entry_date ORDER BY newest")
        with self._connect() as con:
            rows = con.execute(sql).fetchall()
        return {d: up > down for d, up, down, _ in rows if up != down}

    def count(self) -> int:
        """How many labels are kept (current and superseded)."""
        with self._connect() as con:
            return int(con.execute("SELECT count(*) FROM feedback").fetchone()[0])

    def history(self, *, limit: int | None = None) -> list[dict[str, object]]:
        """Every label kept (for export: the current ones and the newest superseded ones), oldest first;
        with ``limit``, only the newest ``limit`` (labels are appended by anyone who can reach the app, so
        an export must have a bound)."""
        sql = "SELECT entry_date, label, user, created_at FROM feedback ORDER BY id DESC"
        with self._connect() as con:
            rows = con.execute(sql + (" LIMIT ?" if limit is not None else ""),
                               (int(limit),) if limit is not None else ()).fetchall()[::-1]
        return [{"date": d, "interesting": None if v is None else bool(v), "user": u, "at": t} for d, v, u, t in rows]
