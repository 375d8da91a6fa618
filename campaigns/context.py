"""The running application: settings plus a lazily opened engine, passed to services."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from campaigns.config import Settings
from campaigns.store.db import check_reachable, make_engine, session_scope
from campaigns.store.schema import require_current


@dataclass
class App:
    """What every command needs: validated settings and the database."""

    settings: Settings
    _checked: bool = field(default=False, repr=False)

    @cached_property
    def engine(self) -> Engine:
        """The engine for the configured database (not checked for schema)."""
        return make_engine(self.settings.database_url, echo=self.settings.database.echo)

    def ready_engine(self) -> Engine:
        """The engine, after checking the database is reachable and at the current schema."""
        if not self._checked:
            check_reachable(self.engine)
            require_current(self.engine)
            self._checked = True
        return self.engine

    @contextmanager
    def session(self, write: bool = True) -> Iterator[Session]:
        """One transaction on a current database: commit on success, roll back on error.

        A writing session takes SQLite's write lock up front (see `session_scope`), so a
        CLI write during a send waits its turn; long reads (reports) pass write=False so
        they never hold the lock.
        """
        with session_scope(self.ready_engine(), immediate=write) as s:
            yield s
