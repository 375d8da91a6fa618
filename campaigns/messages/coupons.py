"""Coupon pools: import codes, hand each delivery one unused code, exactly once.

A code is used once `assigned_at` is set, and it stays used even if its delivery is
later deleted (the foreign key only nulls `delivery_id`). Unique (pool, delivery_id)
makes a re-rendered delivery find its own code instead of taking a second one.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from campaigns.errors import ConflictError, InputError
from campaigns.store.models import Coupon
from campaigns.timespec import utcnow

POOL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")
CODE = re.compile(r"^[\x21-\x7e]{1,200}$")  # printable ASCII, no spaces: safe in SMS and URLs
CHUNK = 1000


class PoolEmpty(ConflictError):
    """The pool has no unused code left."""


@dataclass(frozen=True)
class PoolStats:
    """Counts for one pool."""

    pool: str
    total: int
    used: int

    @property
    def available(self) -> int:
        """Codes still unused."""
        return self.total - self.used


def check_pool(pool: str) -> str:
    """The pool name, or InputError when it is not a simple name."""
    if not POOL.match(pool or ""):
        raise InputError(f"coupon pool '{pool}': use letters, digits, '_' or '-' (up to 100)")
    return pool


def read_codes(path: Path) -> list[str]:
    """Codes from a file: one per line, or the first (or `code`) column of a CSV."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    column = 0
    if rows and rows[0] and any(c.strip().lower() == "code" for c in rows[0]):
        column = [c.strip().lower() for c in rows[0]].index("code")
        rows = rows[1:]
    codes: list[str] = []
    for row in rows:
        value = row[column].strip() if len(row) > column else ""
        if not value:
            continue
        if not CODE.match(value):
            raise InputError(f"{path}: '{value[:40]}' is not a coupon code (printable ASCII, no spaces, up to 200)")
        codes.append(value)
    return codes


def import_pool(session: Session, pool: str, path: Path) -> int:
    """Add the file's codes to the pool; returns how many were new (duplicates are skipped)."""
    check_pool(pool)
    codes = list(dict.fromkeys(read_codes(Path(path))))
    if not codes:
        raise InputError(f"{path}: no coupon codes found")
    ins = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    before = session.scalar(select(func.count()).select_from(Coupon).where(Coupon.pool == pool)) or 0
    now = utcnow()
    for i in range(0, len(codes), CHUNK):
        rows = [{"pool": pool, "code": c, "created_at": now} for c in codes[i:i + CHUNK]]
        session.execute(ins(Coupon).values(rows).on_conflict_do_nothing())
    after = session.scalar(select(func.count()).select_from(Coupon).where(Coupon.pool == pool)) or 0
    return after - before


def _empty(pool: str) -> PoolEmpty:
    return PoolEmpty(f"coupon pool '{pool}' has no unused codes left "
                     f"(add codes with `campaigns coupons import {pool} FILE`)")


def assign_code(session: Session, pool: str, delivery_id: int) -> str:
    """The delivery's code from `pool`: the one it already has, else the next unused one."""
    table = Coupon.__table__
    conn = session.connection()  # Core, not ORM: this runs once per message of a coupon campaign
    mine = select(table.c.code).where(table.c.pool == pool, table.c.delivery_id == delivery_id)
    code = conn.execute(mine).scalar()
    if code is not None:
        return code
    # `delivery_id IS NULL` lets the unique (pool, delivery_id) index find free codes directly;
    # `assigned_at IS NULL` skips codes whose delivery was deleted (they stay used).
    pick = (select(table.c.id)
            .where(table.c.pool == pool, table.c.delivery_id.is_(None), table.c.assigned_at.is_(None))
            .limit(1))
    if conn.dialect.name == "postgresql":
        # Concurrent workers skip rows another transaction is taking instead of queueing on them.
        pick = pick.with_for_update(skip_locked=True)
    stmt = (update(table)
            .where(table.c.id == pick.scalar_subquery(), table.c.assigned_at.is_(None))
            .values(delivery_id=delivery_id, assigned_at=utcnow())
            .returning(table.c.code))
    try:
        with session.begin_nested():
            code = conn.execute(stmt).scalar()
    except IntegrityError:
        # The same delivery took a code in another transaction first: use that one.
        code = conn.execute(mine).scalar()
    if code is None:
        raise _empty(pool)
    return code


def peek_code(session: Session, pool: str) -> str:
    """The code a delivery would get next, without taking it (previews and test sends)."""
    code = session.scalar(select(Coupon.code).where(Coupon.pool == pool, Coupon.delivery_id.is_(None),
                                                    Coupon.assigned_at.is_(None)).limit(1))
    if code is None:
        raise _empty(pool)
    return code


def pool_stats(session: Session) -> list[PoolStats]:
    """Total and used codes per pool, by pool name."""
    q = (select(Coupon.pool, func.count(), func.count(Coupon.assigned_at))
         .group_by(Coupon.pool).order_by(Coupon.pool))
    return [PoolStats(pool, total, used) for pool, total, used in session.execute(q)]

