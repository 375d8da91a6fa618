"""Create or upgrade the database schema through Alembic, and check it is current.

Every command checks the schema (`require_current`), and importing Alembic costs a command
more CPU than its own work often does; so the check reads the stamp with plain SQL and the
newest revision from the migration files' `revision`/`down_revision` lines, and imports
Alembic only to explain a mismatch (tests/unit/test_schema_check.py holds the two readings equal).
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text

from campaigns.errors import ConfigError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version"  # Alembic's default, which migrations/env.py keeps


def alembic_config() -> Config:
    """An Alembic config pointing at our migrations folder (no alembic.ini needed)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str:
    """The newest migration this code knows."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at; None for an empty database."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Bring the database to head; returns (revision before, revision after)."""
    from alembic import command

    before = current_revision(engine)
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    return before, head_revision()


@cache
def head_on_disk() -> str | None:
    """The newest revision read from the migration files without Alembic: the one no other
    file names as its `down_revision` (None unless exactly one, as with branches)."""
    revisions: dict[str, object] = {}
    for path in (MIGRATIONS / "versions").glob("*.py"):
        names: dict[str, object] = {}
        for node in ast.parse(path.read_text(encoding="utf-8")).body:  # `revision = ...`, `revision: str = ...`
            value: ast.expr | None
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target, value = node.targets[0], node.value
            elif isinstance(node, ast.AnnAssign):
                target, value = node.target, node.value
            else:
                continue
            if isinstance(target, ast.Name) and isinstance(value, ast.Constant | ast.Tuple):
                names[target.id] = ast.literal_eval(value)
        if isinstance(names.get("revision"), str):
            revisions[str(names["revision"])] = names.get("down_revision")
    downs: set[object] = set()
    for down in revisions.values():
        downs.update(down if isinstance(down, tuple) else (down,))
    heads = [rev for rev in revisions if rev not in downs]
    return heads[0] if len(heads) == 1 else None


def stamped_revision(engine: Engine) -> str | None:
    """The revision stamped in the database by plain SQL; None when there is none or several."""
    with engine.connect() as conn:
        if not inspect(conn).has_table(VERSION_TABLE):
            return None
        rows = conn.scalars(text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
    return rows[0] if len(rows) == 1 else None


def require_current(engine: Engine) -> None:
    """Refuse to work on a database that is missing or older than this code."""
    head = head_on_disk()
    if head is not None and stamped_revision(engine) == head:
        return  # current: Alembic not needed
    rev = current_revision(engine)
    if rev is None:
        raise ConfigError("the database is not initialised: run `campaigns init`")
    if rev != head_revision():
        raise ConfigError(f"the database schema is at {rev}, this version needs {head_revision()}: run `campaigns init` to upgrade")
