"""PostgreSQL has statistics for what a bulk write just loaded (campaigns/store/stats.py).

Without them the planner guessed one row per table: the consent check of one wave of 200,
in a shop of 3,000 imported a minute earlier, ran 16.8 s (nested loops) instead of 2 ms, and
a 3,000-message send took 450 s."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert, select, text

from campaigns.audience.contacts import import_contacts
from campaigns.audience.messageable import rule
from campaigns.config import load_settings
from campaigns.context import App
from campaigns.store import stats
from campaigns.store.models import Contact
from tests.conftest import write_config
from tests.scheduler.conftest import REPO_TEMPLATES

pytestmark = pytest.mark.postgres


def _reltuples(app: App, table: str) -> float:
    with app.engine.connect() as conn:
        return float(conn.scalar(text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:t)"), {"t": table}))


def test_an_import_leaves_statistics_and_the_consent_check_uses_them(tmp_path, pg_url):
    app = App(load_settings(write_config(tmp_path, pg_url), environ={}))
    csv = tmp_path / "people.csv"
    csv.write_text("email\n" + "".join(f"p{i}@example.com\n" for i in range(stats.ANALYZE_AFTER_ROWS + 100)), encoding="utf-8")
    assert _reltuples(app, "contact") == -1  # never analyzed
    with app.session() as s:
        import_contacts(s, app.settings, csv, consent_channels=["email"], source="test")
    assert _reltuples(app, "contact") >= stats.ANALYZE_AFTER_ROWS
    assert _reltuples(app, "consent_event") >= stats.ANALYZE_AFTER_ROWS
    ids = list(range(1, 201))
    r = rule("email", False, datetime.now(UTC), contact_ids=ids)
    with app.engine.connect() as conn:
        q = select(Contact.id).where(Contact.id.in_(ids), r.clause).compile(conn, compile_kwargs={"literal_binds": True})
        plan = "\n".join(conn.exec_driver_sql("EXPLAIN " + q.string.replace("%", "%%")).scalars())
    # One row guessed everywhere made every wave loop over the whole ledger per contact.
    assert "rows=1 " not in plan.splitlines()[0], plan
    app.engine.dispose()


def test_planning_analyzes_tables_loaded_behind_its_back_and_the_rows_it_wrote(tmp_path, pg_url):
    from tests.scheduler.conftest import make_campaign
    from tests.scheduler.test_daemon import _plan_now

    shutil.copytree(REPO_TEMPLATES, tmp_path / "templates")
    app = App(load_settings(write_config(tmp_path, pg_url), environ={}))
    now = datetime.now(UTC)
    with app.session() as s:  # loaded the way a restore or an outside script would: no import, no ANALYZE
        s.execute(insert(Contact), [{"email": f"q{i}@example.com", "created_at": now, "updated_at": now}
                                    for i in range(stats.ANALYZE_AFTER_ROWS + 100)])
    assert _reltuples(app, "contact") == -1
    cid = make_campaign(app)
    _plan_now(app, cid)
    assert _reltuples(app, "contact") >= stats.ANALYZE_AFTER_ROWS
    assert _reltuples(app, "delivery") != -1
    app.engine.dispose()
