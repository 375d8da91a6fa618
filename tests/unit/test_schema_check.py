"""The schema check every command makes reads the stamp with plain SQL and the newest
revision from the migration files, without Alembic; it must agree with Alembic."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy import text

from campaigns.errors import ConfigError
from campaigns.store import schema
from campaigns.store.db import make_engine


def test_the_newest_revision_read_from_the_files_is_alembics_head() -> None:
    assert schema.head_on_disk() == schema.head_revision()


def test_the_stamp_read_by_sql_is_alembics_current_revision(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        assert schema.stamped_revision(engine) == schema.current_revision(engine) == schema.head_revision()
        schema.require_current(engine)  # passes
    finally:
        engine.dispose()


def test_an_empty_database_is_refused_as_before(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    assert schema.stamped_revision(engine) is None
    with pytest.raises(ConfigError, match=r"not initialised: run `campaigns init`"):
        schema.require_current(engine)
    engine.dispose()


def test_an_older_database_is_refused_as_before(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '0000'"))
        with pytest.raises(ConfigError, match=rf"schema is at 0000, this version needs {schema.head_revision()}"):
            schema.require_current(engine)
    finally:
        engine.dispose()


def test_a_command_on_a_current_database_does_not_import_alembic(db_url: str) -> None:
    script = ("import sys\nfrom campaigns.store import schema\nfrom campaigns.store.db import make_engine\n"
              f"schema.require_current(make_engine({db_url!r}))\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
