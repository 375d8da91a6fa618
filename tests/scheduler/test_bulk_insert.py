"""store.bulk.insert_rows (and insert_columns) store what SQLAlchemy's insert(table) stores (planning writes its rows with it)."""

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select

from campaigns.store import bulk
from campaigns.store.bulk import insert_columns, insert_rows
from campaigns.store.models import Campaign, CampaignRun, Delivery
from tests.scheduler.conftest import add_people, make_campaign


def test_bulk_rows_read_back_as_an_ordinary_insert_writes_them(make_app):
    app = make_app()
    people = add_people(app, 4)
    cid = make_campaign(app)
    at = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)
    with app.session() as s:
        campaign = s.get(Campaign, cid)
        run = CampaignRun(campaign_id=cid, scheduled_for=at, status="planned", started_at=at, counts={})
        s.add(run)
        s.flush()
        rows = [{"run_id": run.id, "campaign_id": cid, "contact_id": p, "channel": campaign.channel, "step": i % 2, "variant": None if i else "A",
                 "template_name": "welcome", "is_holdout": bool(i % 2), "state": "queued", "attempts": 0,
                 "due_at": at + timedelta(hours=i), "lifecycle_stage": "new", "rfm_segment": None,
                 "created_at": at, "updated_at": at, "occurrence": i // 2, "ab_remainder": i == 3}
                for i, p in enumerate(people)]
        insert_rows(s.connection(), Delivery.__table__, rows[:1])
        insert_columns(s.connection(), Delivery.__table__, {k: [r[k] for r in rows[1:3]] for k in rows[0]})  # as planning does
        s.connection().execute(insert(Delivery.__table__), rows[3:])
        s.commit()
        got = s.execute(select(*(Delivery.__table__.c[k] for k in rows[0])).order_by(Delivery.contact_id)).all()
    assert [dict(r._mapping) for r in got] == rows
    assert got[0].due_at == at and got[0].due_at.tzinfo is not None


def test_a_defaulted_column_left_out_is_refused(make_app):
    app = make_app()
    with app.session() as s:
        try:
            insert_rows(s.connection(), Delivery.__table__, [{"contact_id": 1}])
        except ValueError as e:
            assert "created_at" in str(e)
        else:
            raise AssertionError("a row without its defaulted columns was inserted")


def _raw(engine, table):
    cols = ", ".join(f"typeof({c.name}), quote({c.name}), hex({c.name})" for c in table.c)  # quote() stops at a NUL
    with engine.connect() as conn:
        return conn.exec_driver_sql(f"SELECT {cols} FROM {table.name} ORDER BY id").all()


def test_one_statement_stores_the_same_bytes_as_an_ordinary_insert(tmp_path, monkeypatch):
    """Every kind of value, chunks that take the one-statement path and chunks that cannot
    (a float, bytes, a NUL, an integer beyond 64 bits in a varying column): typeof and
    quote() and hex() of each stored value are what insert(table) stores. Each kind varies
    here, so the one statement is taken whatever share of the columns vary."""
    from sqlalchemy import JSON, BigInteger, Boolean, Column, DateTime, Float, Integer, LargeBinary, MetaData, String, Table, event

    monkeypatch.setattr(bulk, "_mostly_fixed", lambda columns: True)

    from campaigns.store.db import make_engine

    def table(name):
        return Table(name, MetaData(), Column("id", Integer, primary_key=True), Column("n", BigInteger),
                     Column("s", String), Column("f", Float), Column("b", Boolean), Column("at", DateTime(timezone=True)),
                     Column("j", JSON), Column("raw", LargeBinary), Column("k", Integer))
    ours, theirs = table("ours"), table("theirs")
    engine = make_engine(f"sqlite:///{tmp_path / 'b.db'}")
    ours.metadata.create_all(engine)
    theirs.metadata.create_all(engine)
    at = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)
    odd = 'quote " back \\ line\nbreak tab\t é 😀 \x01 \\u0000 literal'

    def rows(count, **over):
        return [{"n": i * 7 - 3, "s": [odd, "plain", None, ""][i % 4], "f": 1.5, "b": bool(i % 2),
                 "at": at + timedelta(seconds=i), "j": {"k": [i, "x"]}, "raw": b"\x00\xff", "k": 42, **over}
                for i in range(count)]
    chunks = [rows(5), rows(1), rows(3, f=None), rows(3, k=None), rows(4, n=2**62, s="same"),
              rows(3, f=0.1 + 0.2), [{**r, "f": [0.1, 1e300, None][i]} for i, r in enumerate(rows(3))],
              [{**r, "raw": [b"a", None, b"\x00"][i]} for i, r in enumerate(rows(3))],
              [{**r, "s": ["a\x00b", "c", None][i]} for i, r in enumerate(rows(3))],
              [{**r, "n": [2**63 - 1, -(2**63), 0][i]} for i, r in enumerate(rows(3))],
              [{**r, "k": [1, True, None][i]} for i, r in enumerate(rows(3))]]
    statements = []
    event.listen(engine, "before_cursor_execute",
                 lambda conn, cursor, sql, params, context, many: statements.append((sql, many)))
    with engine.begin() as conn:
        for chunk in chunks:
            insert_rows(conn, ours, chunk)
            conn.execute(insert(theirs), chunk)
    assert _raw(engine, ours) == _raw(engine, theirs)
    ours_sql = [(sql, many) for sql, many in statements if "ours" in sql]
    one = [sql for sql, many in ours_sql if "json_each" in sql and not many]
    assert len(one) >= 6, ours_sql  # the exact kinds took one statement each
    assert any(many for _sql, many in ours_sql), "a float, bytes or NUL in a varying column takes the executemany"


def test_rows_that_mostly_differ_take_the_executemany_and_still_return_their_ids(tmp_path):
    """A chunk where most columns vary (contacts) is bound row by row; with `returning`, the
    rows it added come back (those above the largest id before), and only those."""
    from sqlalchemy import Column, Integer, MetaData, String, Table, event

    from campaigns.store.db import make_engine

    people = Table("people", MetaData(), Column("id", Integer, primary_key=True), Column("email", String),
                   Column("name", String), Column("shop", String))
    engine = make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    people.metadata.create_all(engine)
    statements = []
    event.listen(engine, "before_cursor_execute", lambda conn, cursor, sql, params, context, many: statements.append((sql, many)))
    with engine.begin() as conn:
        assert insert_rows(conn, people, [{"email": f"a{i}@x", "name": f"A {i}", "shop": "s"} for i in range(3)],
                           returning=("id", "email")) == [(1, "a0@x"), (2, "a1@x"), (3, "a2@x")]
        conn.exec_driver_sql("DELETE FROM people WHERE id = 2")
        conn.exec_driver_sql("INSERT INTO people (id, email, name, shop) VALUES (10, 'by hand', 'x', 's')")
        got = insert_rows(conn, people, [{"email": f"b{i}@x", "name": f"B {i}", "shop": "s"} for i in range(2)],
                          returning=("id", "email"))
        mostly_same = insert_rows(conn, people, [{"email": f"c{i}@x", "name": "C", "shop": "s"} for i in range(2)],
                                  returning=("id", "email"))
    assert sorted(got) == [(11, "b0@x"), (12, "b1@x")]
    assert sorted(mostly_same) == [(13, "c0@x"), (14, "c1@x")]
    inserts = [(sql, many) for sql, many in statements if sql.startswith("INSERT INTO people (") and "by hand" not in sql]
    assert [many for _sql, many in inserts] == [True, True, False]
    assert "json_each" in inserts[2][0] and "json_each" not in inserts[0][0]


def test_among_finds_the_same_rows_as_in_whatever_the_values(tmp_path):
    """`among` (one JSON parameter on SQLite) matches exactly what IN matches: quotes,
    backslashes, non-ASCII, an empty string, a NUL (which takes the ordinary IN), numbers."""
    from sqlalchemy import Column, Integer, MetaData, String, Table

    from campaigns.store.bulk import among
    from campaigns.store.db import make_engine

    things = Table("things", MetaData(), Column("id", Integer, primary_key=True), Column("name", String), Column("n", Integer))
    engine = make_engine(f"sqlite:///{tmp_path / 't.db'}")
    things.metadata.create_all(engine)
    names = ['plain', 'quote " here', "back \\ slash", "é 😀", "", "nul \x00 inside", "\\u0000 written out", "x" * 300]
    with engine.begin() as conn:
        conn.execute(insert(things), [{"name": n, "n": i} for i, n in enumerate(names)])
        for wanted in (names, names[:1], ["missing", *names[2:4]], ["nul \x00 inside", "plain"], [str(i) for i in range(3000)]):
            ours = conn.execute(select(things.c.id).where(among("sqlite", things.c.name, wanted))).scalars().all()
            theirs = conn.execute(select(things.c.id).where(things.c.name.in_(wanted))).scalars().all()
            assert sorted(ours) == sorted(theirs)
        assert sorted(conn.execute(select(things.c.id).where(among("sqlite", things.c.n, [1, 2]))).scalars()) == [2, 3]
