"""The library holds no engine its owner dropped."""

from __future__ import annotations

from sqlalchemy import create_engine


def test_a_dropped_engine_is_freed(tmp_path):
    # Nothing in the library may keep an engine alive once its owner drops it: a per-engine
    # session factory cache once did (through the factory's bind), and with it every test's
    # pool and PostgreSQL LISTEN connection, until the server refused new clients.
    import gc
    import weakref

    from sqlalchemy import text

    from campaigns.store.db import session_scope

    engine = create_engine(f"sqlite:///{tmp_path / 'c.db'}")
    with session_scope(engine) as session:
        assert session.execute(text("SELECT 1")).scalar() == 1
    ref = weakref.ref(engine)
    engine.dispose()
    del engine, session
    gc.collect()
    assert ref() is None
