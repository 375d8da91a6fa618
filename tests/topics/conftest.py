"""Topic tests use the scheduler's shop fixtures."""

from tests.scheduler.conftest import make_app  # noqa: F401 - a fixture
