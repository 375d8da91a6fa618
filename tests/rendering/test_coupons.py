"""Coupon pools: import is idempotent, a code is handed out once, also under concurrency."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select

from campaigns.errors import InputError
from campaigns.messages.coupons import PoolEmpty, assign_code, import_pool, peek_code, pool_stats
from campaigns.store.models import Coupon, Delivery
from tests.rendering.conftest import add_contact, make_campaign, make_delivery


def codes_file(tmp_path: Path, codes: list[str], name: str = "codes.txt") -> Path:
    f = tmp_path / name
    f.write_text("\n".join(codes) + "\n")
    return f


def test_import_counts_new_codes_and_skips_duplicates(rapp, tmp_path):
    with rapp.session() as s:
        assert import_pool(s, "SPRING", codes_file(tmp_path, ["A1", "A2", "A2", "", "A3"])) == 3
        assert import_pool(s, "SPRING", codes_file(tmp_path, ["A3", "A4"], "more.txt")) == 1
        assert import_pool(s, "OTHER", codes_file(tmp_path, ["A1"], "o.txt")) == 1  # pools are separate
        stats = {p.pool: (p.total, p.used, p.available) for p in pool_stats(s)}
    assert stats == {"OTHER": (1, 0, 1), "SPRING": (4, 0, 4)}


def test_import_reads_the_code_column_of_a_csv(rapp, tmp_path):
    f = tmp_path / "codes.csv"
    f.write_text("value,code\n10,X-1\n20,X-2\n")
    with rapp.session() as s:
        assert import_pool(s, "CSV", f) == 2
        assert sorted(s.scalars(select(Coupon.code)).all()) == ["X-1", "X-2"]


@pytest.mark.parametrize(("pool", "codes", "message"), [
    ("bad pool", ["A"], "coupon pool 'bad pool'"),
    ("OK", ["has space"], "is not a coupon code"),
    ("OK", [""], "no coupon codes found"),
])
def test_import_refuses_bad_pool_names_and_codes(rapp, tmp_path, pool, codes, message):
    with rapp.session() as s, pytest.raises(InputError, match=message):
        import_pool(s, pool, codes_file(tmp_path, codes))


def test_a_used_code_stays_used_after_its_delivery_is_deleted(rapp, tmp_path):
    with rapp.session() as s:
        import_pool(s, "P", codes_file(tmp_path, ["ONE", "TWO"]))
        _, run = make_campaign(s)
        c = add_contact(s, "a@example.com")
        d = make_delivery(s, run, c)
        first = assign_code(s, "P", d.id)
        other = ({"ONE", "TWO"} - {first}).pop()
        s.execute(delete(Delivery).where(Delivery.id == d.id))
        d2 = make_delivery(s, run, c, step=1)
        assert peek_code(s, "P") == other
        assert assign_code(s, "P", d2.id) == other
        with pytest.raises(PoolEmpty):
            peek_code(s, "P")


def test_concurrent_workers_never_hand_out_a_code_twice(rapp, tmp_path):
    with rapp.session() as s:
        import_pool(s, "RACE", codes_file(tmp_path, [f"R{i:03d}" for i in range(30)]))
        _, run = make_campaign(s)
        ids = [make_delivery(s, run, add_contact(s, f"c{i}@example.com")).id for i in range(40)]
    got: dict[int, str] = {}
    empty: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(4)

    def worker(mine: list[int]) -> None:
        start.wait()
        for delivery_id in mine:
            try:
                with rapp.session() as s:  # one writing transaction per delivery (BEGIN IMMEDIATE on SQLite)
                    code = assign_code(s, "RACE", delivery_id)
                with lock:
                    got[delivery_id] = code
            except PoolEmpty:
                with lock:
                    empty.append(delivery_id)

    threads = [threading.Thread(target=worker, args=(ids[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 30 and len(empty) == 10
    assert len(set(got.values())) == 30
    with rapp.session() as s:
        rows = s.execute(select(Coupon.delivery_id, Coupon.code).where(Coupon.assigned_at.is_not(None))).all()
        assert dict(rows) == got
        # a delivery rendered again (a retry) gets its own code back, not a new one
        first = next(iter(got))
        assert assign_code(s, "RACE", first) == got[first]
        assert s.scalar(select(func.count()).select_from(Coupon).where(Coupon.assigned_at.is_(None))) == 0
