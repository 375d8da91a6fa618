"""SQLAlchemy 2.0 engine and sessions, the same code on SQLite and PostgreSQL.

SQLite runs in WAL mode with foreign keys on and a busy timeout, so the daemon, workers
and CLI can share one file. The schema is created by Alembic only (`campaigns init`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import DateTime, Engine, create_engine, event
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from campaigns.errors import ConfigError, InputError


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC (naive on SQLite, timestamptz on PostgreSQL); always returns aware UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; attach a time zone")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def is_sqlite(engine_or_url: Engine | str) -> bool:
    """True for a SQLite engine or URL."""
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else make_url(engine_or_url)
    return url.get_backend_name() == "sqlite"


def normalise_url(url: str) -> str:
    """Use psycopg 3 for plain postgresql:// URLs (the driver we install)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _private_file(path: Path) -> None:
    """The SQLite file holds personal data: create it 0600 (SQLite gives its -wal and -shm
    files the same mode), and take group and other access off an existing one we own."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        os.close(fd)
    except FileExistsError:
        if path.stat().st_mode & 0o077 and path.stat().st_uid == os.getuid():
            os.chmod(path, 0o600)
    except OSError:
        pass  # a read-only folder and the like: SQLite reports it in its own words


# What SQLite and PostgreSQL say when a statement nests deeper than they parse: a filter
# the segment compiler's caps let through (they are counted in filter levels, not in the
# database's own units) is then refused in one line, not an internal error.
_TOO_COMPLEX = ("parser stack overflow", "Expression tree is too large")
_PG_TOO_COMPLEX = "54001"  # statement_too_complex: stack depth limit exceeded


def _refuse_too_complex(ctx: ExceptionContext) -> None:
    orig = ctx.original_exception
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    if getattr(orig, "sqlstate", None) == _PG_TOO_COMPLEX or any(m in text for m in _TOO_COMPLEX):
        raise InputError(f"the query is too complex for the database ({text}); "
                         "a filter nests too deeply: simplify it") from None


def make_engine(url: str, echo: bool = False) -> Engine:
    """An engine with our connection settings; a bad URL is a ConfigError."""
    try:
        url = normalise_url(url)
        parsed = make_url(url)
    except Exception:
        raise ConfigError("database url: not a valid SQLAlchemy URL") from None
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database
        if db and db != ":memory:":
            folder = Path(db).parent
            if not folder.exists():
                raise ConfigError(f"database url: folder {folder} does not exist")
            _private_file(Path(db))
        engine = create_engine(url, echo=echo, connect_args={"timeout": 30})
        event.listen(engine, "handle_error", _refuse_too_complex)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy own transactions: pysqlite's implicit BEGIN breaks
            # BEGIN IMMEDIATE, which the dispatcher uses to claim rows.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            mode = conn.info.pop("begin_mode", None) or conn.get_execution_options().get("sqlite_begin", "")
            conn.exec_driver_sql(f"BEGIN {mode}".strip())

        return engine
    try:
        engine = create_engine(url, echo=echo, pool_pre_ping=True)
    except Exception as exc:  # e.g. a driver that is not installed
        raise ConfigError(f"database url: {exc}") from None
    event.listen(engine, "handle_error", _refuse_too_complex)
    return engine


_SESSIONS: sessionmaker[Session] = sessionmaker(expire_on_commit=False)


def session_factory(engine: Engine) -> Callable[[], Session]:
    """Sessions that keep loaded values after commit (the CLI prints them afterwards).

    One `sessionmaker` for the process, bound per call: each `sessionmaker` makes a new
    Session subclass, and SQLAlchemy copies every Session event listener onto it, which
    cost more than the click tracking endpoint's own queries when made per transaction.
    Nothing here holds the engine (a per-engine cache did, through the factory's bind,
    and kept every test's engine, pool and LISTEN connection alive until PostgreSQL ran
    out of connections).
    """
    return partial(_SESSIONS, bind=engine)


@contextmanager
def session_scope(engine: Engine, immediate: bool = False) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any error.

    `immediate`: on SQLite, take the write lock up front (BEGIN IMMEDIATE). A deferred
    transaction that reads and then writes while another process writes fails with
    "database is locked" (a read lock cannot be upgraded) instead of waiting its turn.
    """
    immediate = immediate and is_sqlite(engine)
    with write_turn(engine) if immediate else nullcontext(), session_factory(engine)() as session:
        if immediate:
            session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


_TURNS: WeakKeyDictionary[Engine, threading.RLock] = WeakKeyDictionary()
_TURNS_LOCK = threading.Lock()
TURN_WAIT_SECONDS = 30.0  # as long as SQLite's busy timeout (make_engine): then SQLite decides


@contextmanager
def write_turn(engine: Engine) -> Iterator[None]:
    """This process's writers to a SQLite file take turns on a lock before BEGIN IMMEDIATE
    (`session_scope(immediate=True)` and the dispatcher's `write_transaction` both take it).

    A writer that finds the file locked is put to sleep by SQLite and retries after 1, 2, 5,
    10 ... 100 ms; concurrent short writes (click and open requests on worker threads) spent
    most of their time asleep so. On a Python lock the next writer starts the moment the
    holder commits. Re-entrant: a write inside a write on one thread meets SQLite's lock, as
    it always did; after TURN_WAIT_SECONDS the writer goes on to SQLite's own lock, so a
    thread that waits for another's write while holding its own gets "database is locked",
    as before, never a hang. Other processes are waited for by SQLite's busy timeout. (The
    dictionary's key is weak and its value only a lock: no engine is kept alive here.)"""
    with _TURNS_LOCK:
        turn = _TURNS.get(engine)
        if turn is None:
            turn = _TURNS[engine] = threading.RLock()
    got = turn.acquire(timeout=TURN_WAIT_SECONDS)
    try:
        yield
    finally:
        if got:
            turn.release()


def check_reachable(engine: Engine) -> None:
    """Raise a clear ConfigError when the database cannot be opened."""
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise ConfigError(f"cannot open the database: {reason}") from None
