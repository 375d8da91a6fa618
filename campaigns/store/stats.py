"""Planner statistics after bulk writes (PostgreSQL).

PostgreSQL plans by the statistics ANALYZE gathers. A table loaded and queried within the
same minute has none (autovacuum analyzes it later), and the planner then guesses one row
everywhere: the consent check of a wave of 200 contacts, against a freshly imported shop of
3,000, chose nested loops that ran 16.8 s instead of 2 ms, and a send of 3,000 messages took
450 s. So every bulk write (an import, a planned firing) analyzes the tables it wrote, in its
own transaction (ANALYZE counts the transaction's own new rows), and planning first
analyzes any core table that was never analyzed (a restored or externally loaded database).
SQLite plans well enough without statistics; nothing is done there.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Table, text
from sqlalchemy.orm import Session

ANALYZE_AFTER_ROWS = 500  # smaller writes leave the statistics to autovacuum


def after_bulk_write(session: Session, tables: Iterable[Table], rows: int) -> None:
    """ANALYZE `tables` on PostgreSQL when `rows` rows were just written to them."""
    conn = session.connection()
    if rows < ANALYZE_AFTER_ROWS or conn.dialect.name != "postgresql":
        return
    for table in tables:
        conn.exec_driver_sql(f"ANALYZE {conn.dialect.identifier_preparer.format_table(table)}")


def never_analyzed(session: Session, tables: Iterable[Table]) -> None:
    """ANALYZE those of `tables` PostgreSQL has no statistics for yet (reltuples is -1 until
    the first ANALYZE or VACUUM); one catalogue read finds them."""
    conn = session.connection()
    if conn.dialect.name != "postgresql":
        return
    names = [conn.dialect.identifier_preparer.format_table(t) for t in tables]
    bare = set(conn.scalars(text("SELECT n FROM unnest(CAST(:names AS text[])) AS n "
                                 "JOIN pg_class ON pg_class.oid = to_regclass(n) WHERE reltuples = -1"), {"names": names}))
    for name in names:
        if name in bare:
            conn.exec_driver_sql(f"ANALYZE {name}")
