"""Shared fixtures: a real database per test (SQLite always, PostgreSQL when configured),
settings written to a real config file, and the CLI run in-process.

PostgreSQL tests run when CAMPAIGNS_TEST_POSTGRES_URL is set (CI sets it); each test gets
its own schema on that server, so tests never see each other's rows.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url

from campaigns.config import Settings, load_settings
from campaigns.context import App
from campaigns.store import schema
from campaigns.store.db import make_engine, normalise_url

os.environ.setdefault("COLUMNS", "200")  # wide rich tables in captured output
PG_ENV = "CAMPAIGNS_TEST_POSTGRES_URL"
PG_URL = os.environ.get(PG_ENV)
TEST_SECRET = "test-secret-key-not-for-production"
_pg_skipped: list[str] = []


def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.getbasetemp() / "template.db"
    if not path.exists():
        engine = make_engine(f"sqlite:///{path}")
        schema.upgrade(engine)
        engine.dispose()
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated, empty database: SQLite (always) and PostgreSQL (when configured)."""
    if request.param == "sqlite":
        target = tmp_path / "campaigns.db"
        shutil.copy(_sqlite_template(tmp_path_factory), target)
        yield f"sqlite:///{target}"
        return
    yield from _postgres_schema(request)


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A migrated PostgreSQL schema (skips when no server is configured)."""
    yield from _postgres_schema(request)


_pg_admin_engine: Engine | None = None
_pg_schema_sql: str | None = None  # what `schema.upgrade` runs on an empty schema (see _postgres_schema)


def _pg_admin() -> Engine:
    """One engine per test process for creating and dropping the tests' schemas."""
    global _pg_admin_engine
    if _pg_admin_engine is None:
        assert PG_URL
        # pool_pre_ping: the reliability scenarios restart PostgreSQL under it.
        _pg_admin_engine = create_engine(normalise_url(PG_URL), isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    return _pg_admin_engine


def _recording(engine: Engine) -> list[str]:
    """Every statement that changes the schema, as `engine` runs it (none of them take parameters)."""
    statements: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _keep(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if not statement.lstrip().upper().startswith("SELECT"):
            assert not parameters, statement
            statements.append(statement)

    return statements


def _postgres_schema(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh schema at head. The first one in each test process is migrated by Alembic
    (`schema.upgrade`), which is recorded; later ones replay that SQL in one round trip, a
    few times cheaper than Alembic's reflection and statement-by-statement DDL over 800 tests."""
    global _pg_schema_sql
    if not PG_URL:
        _pg_skipped.append(request.node.nodeid)
        pytest.skip(f"PostgreSQL tests need {PG_ENV}")
    name = "t_" + uuid.uuid4().hex[:12]
    admin = _pg_admin()
    url = make_url(normalise_url(PG_URL)).update_query_dict({"options": f"-csearch_path={name}"})
    rendered = url.render_as_string(hide_password=False)
    if _pg_schema_sql is None:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{name}"'))
        engine = make_engine(rendered)
        statements = _recording(engine)
        schema.upgrade(engine)
        engine.dispose()
        _pg_schema_sql = ";\n".join(statements)
    else:
        # One transaction; synchronous_commit only for this setup (a later commit makes it durable).
        with admin.connect() as conn:
            conn.exec_driver_sql(f'BEGIN; SET LOCAL synchronous_commit TO off; CREATE SCHEMA "{name}"; '
                                 f'SET LOCAL search_path TO "{name}";\n{_pg_schema_sql};\nCOMMIT')
    try:
        yield rendered
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND query LIKE '%{name}%'"))
            conn.exec_driver_sql(f'BEGIN; SET LOCAL synchronous_commit TO off; DROP SCHEMA "{name}" CASCADE; COMMIT')


def write_config(folder: Path, db: str, extra: str = "") -> Path:
    """A config.toml for a test: its database, a fixed secret, outbox and templates inside `folder`."""
    path = folder / "config.toml"
    path.write_text(
        f'secret_key = "{TEST_SECRET}"\n'
        'default_region = "US"\n'
        f'{extra}\n'
        "[database]\n"
        f'url = "{db}"\n',
        encoding="utf-8",
    )
    return path


@pytest.fixture
def config_path(tmp_path: Path, db_url: str) -> Path:
    """The test's config file."""
    return write_config(tmp_path, db_url)


@pytest.fixture
def settings(config_path: Path) -> Settings:
    """Settings loaded from the test's config file, ignoring the caller's environment."""
    return load_settings(config_path, environ={})


@pytest.fixture
def app(settings: Settings) -> Iterator[App]:
    """An App on the test database."""
    a = App(settings)
    yield a
    a.engine.dispose()


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class CliRunner:
    """Runs `campaigns --config <test config> ...` in-process, exactly as the console script does."""

    def __init__(self, config: Path) -> None:
        self.config = config

    def __call__(self, *args: str, input: str | None = None) -> CliResult:
        from campaigns.cli import main

        out, err = io.StringIO(), io.StringIO()
        old_stdin = sys.stdin
        sys.stdin = io.StringIO(input or "")
        code = 0
        try:
            with redirect_stdout(out), redirect_stderr(err):
                try:
                    main(["--config", str(self.config), *args])
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            sys.stdin = old_stdin
        return CliResult(code, out.getvalue(), err.getvalue())


@pytest.fixture
def cli(config_path: Path) -> CliRunner:
    """Run the CLI against the test's config and database."""
    return CliRunner(config_path)


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # type: ignore[no-untyped-def]
    if _pg_skipped:
        terminalreporter.write_line(
            f"NOTE: {len(_pg_skipped)} PostgreSQL tests were skipped: set {PG_ENV}="
            "postgresql://postgres@127.0.0.1:5432/test to run them.", yellow=True, bold=True)
