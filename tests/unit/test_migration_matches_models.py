"""The one pre-release migration builds exactly the schema the models declare.

Branches that add a column or an index regenerate migrations/versions/0001 and merge; a merge
that keeps one side's migration and the other side's models would leave a database that
`campaigns init` builds without the new index or table. Alembic's autogenerate comparison
finds any difference.
"""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from campaigns.store.models import Base
from campaigns.store.schema import upgrade


def test_the_migration_builds_what_the_models_declare(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'c.db'}")
    upgrade(engine)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    engine.dispose()

