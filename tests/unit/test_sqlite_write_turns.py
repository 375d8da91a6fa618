"""Writers in one process take turns on a Python lock, not on SQLite's busy handler.

SQLite makes a writer that finds the file locked sleep and retry (1, 2, 5, 10 ... 100 ms), so
32 concurrent click requests, each a short write transaction on a worker thread, spent most
of their time asleep. A process-wide lock per engine hands the turn over the moment the
holder commits; another process is still waited for by SQLite's busy timeout."""

from __future__ import annotations

import threading
import time

from sqlalchemy import event, text

from campaigns.store.db import make_engine, session_scope


def test_a_second_writer_begins_only_after_the_first_commits(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 't.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    seen: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _statement(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        if statement.startswith("BEGIN"):
            seen.append("begin")

    @event.listens_for(engine, "commit")
    def _commit(conn):  # type: ignore[no-untyped-def]
        seen.append("commit")

    inside = threading.Event()

    def first() -> None:
        with session_scope(engine, immediate=True) as s:
            s.execute(text("INSERT INTO t VALUES (1)"))
            inside.set()
            time.sleep(0.5)  # the second writer asks for its turn meanwhile

    def second() -> None:
        inside.wait(10)
        with session_scope(engine, immediate=True) as s:
            s.execute(text("INSERT INTO t VALUES (2)"))

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert seen == ["begin", "commit", "begin", "commit"], seen
    with engine.connect() as conn:
        assert sorted(conn.exec_driver_sql("SELECT x FROM t").scalars()) == [1, 2]
    engine.dispose()


def test_a_reader_inside_a_write_transaction_is_not_held_by_the_turn(tmp_path):
    # Only writers (BEGIN IMMEDIATE) take turns: a deferred reader opened inside a write
    # transaction on the same thread goes on at once and sees the committed state.
    engine = make_engine(f"sqlite:///{tmp_path / 't.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    with session_scope(engine, immediate=True) as s:
        s.execute(text("INSERT INTO t VALUES (1)"))
        with session_scope(engine) as inner:  # a deferred reader inside: fine
            assert inner.execute(text("SELECT count(*) FROM t")).scalar() == 0
    engine.dispose()
