"""A/B winner options on the CLI: one clear line for bad input; show and report print the decision."""

import pytest

from tests.scheduler.conftest import REPO_TEMPLATES

BASE = ["new", "ab", "--segment", "everyone", "--channel", "email", "--at", "2099-12-01 09:00",
        "--variant", "A:welcome:50", "--variant", "B:newsletter:50"]


@pytest.fixture
def ready(cli, tmp_path):
    import shutil
    shutil.copytree(REPO_TEMPLATES, tmp_path / "templates", dirs_exist_ok=True)
    assert cli("segments", "create", "everyone", "--where", 'email contains "@"').exit_code == 0
    return cli


@pytest.mark.parametrize(("extra", "field"), [
    (["--test-share", "0%", "--winner-after", "4h", "--winner-by", "clicks"], "--test-share"),
    (["--test-share", "100%", "--winner-after", "4h", "--winner-by", "clicks"], "--test-share"),
    (["--test-share", "abc", "--winner-after", "4h", "--winner-by", "clicks"], "--test-share"),
    (["--test-share", "20%", "--winner-after", "4h", "--winner-by", "opens"], "--winner-by"),
    (["--test-share", "20%", "--winner-after", "soon", "--winner-by", "clicks"], "--winner-after"),
    (["--test-share", "20%", "--winner-by", "clicks"], "--winner-after"),
])
def test_bad_winner_options_are_one_line_naming_the_field(ready, extra, field):
    r = ready(*BASE, *extra)
    assert r.exit_code != 0 and field in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_winner_options_need_variants(ready):
    r = ready("new", "solo", "--segment", "everyone", "--channel", "email", "--template", "welcome",
              "--test-share", "20%", "--winner-after", "4h", "--winner-by", "clicks")
    assert r.exit_code != 0 and "--variant" in r.output and len(r.output.strip().splitlines()) == 1


def test_show_and_edit_carry_the_winner_settings(ready):
    assert ready(*BASE, "--test-share", "20%", "--winner-after", "4h", "--winner-by", "revenue").exit_code == 0
    shown = ready("show", "ab", "--json").stdout
    assert '"test_share_pct": 20.0' in shown and '"winner_by": "revenue"' in shown and '"winner_after": "4h"' in shown
    assert ready("edit", "ab", "--winner-by", "conversions").exit_code == 0
    assert '"winner_by": "conversions"' in ready("show", "ab", "--json").stdout
    assert ready("clone", "ab", "ab2").exit_code == 0
    assert '"winner_by": "conversions"' in ready("show", "ab2", "--json").stdout


def test_show_and_report_print_the_decision_in_every_format(make_app, tmp_path):
    """After the tick decides, show (table, JSON) and report (table, JSON, CSV, HTML) all carry it."""
    import json
    from datetime import timedelta

    import time_machine

    from scheduler.jobs import tick
    from tests.conftest import CliRunner
    from tests.scheduler.conftest import add_people, make_campaign
    from tests.scheduler.test_ab_winner import AB, FIRE, T0, _click, _send_test_share

    app = make_app()
    add_people(app, 200)
    with time_machine.travel(T0, tick=False):
        cid = make_campaign(app, winner_by="clicks", **AB)
    tick(app, FIRE + timedelta(seconds=5))
    _send_test_share(app, cid, FIRE + timedelta(minutes=1))
    _click(app, cid, "B", 0.7)
    tick(app, FIRE + timedelta(hours=4, seconds=10))
    cli = CliRunner(tmp_path / "config.toml")
    shown = json.loads(cli("show", "promo", "--json").stdout)
    assert shown["runs"][0]["ab_decision"]["winner"] == "B"
    table = cli("show", "promo").stdout
    assert "winner B by clicks (significant" in table
    report = json.loads(cli("report", "promo", "--json").stdout)
    w = report["ab_winner"]
    assert (w["winner_by"], w["test_share_pct"], w["decisions"][0]["winner"]) == ("clicks", 20.0, "B")
    assert report["funnel"]["waiting_for_winner"] == 0
    assert "A/B winner of the firing" in cli("report", "promo").stdout
    csv = cli("report", "promo", "--csv").stdout
    assert "ab_winner.winner,B" in csv and "ab_winner.p_holm.A," in csv
    assert cli("report", "promo", "--html", "-o", str(tmp_path / "r.html")).exit_code == 0
    assert "A/B winner" in (tmp_path / "r.html").read_text()


def test_send_now_sends_only_the_test_share_and_says_the_rest_waits(make_app, tmp_path):
    from sqlalchemy import func, select

    from campaigns.store.models import Delivery
    from tests.conftest import CliRunner
    from tests.scheduler.conftest import add_people, make_campaign

    app = make_app(f'[sending]\ntransport = "file"\noutbox_dir = "{tmp_path / "outbox"}"\n')
    add_people(app, 100)
    make_campaign(app, variants=["A:welcome:50", "B:newsletter:50"], test_share="20%", winner_after="4h",
                  winner_by="clicks", template=None)
    r = CliRunner(tmp_path / "config.toml")("send", "promo", "--now")
    assert r.exit_code == 0 and "waiting for the A/B winner" in r.stdout
    with app.session() as s:
        states = dict(s.execute(select(Delivery.state, func.count()).group_by(Delivery.state)).all())
    assert states.get("waiting", 0) > 50 and "queued" not in states and states.get("sent", 0) < 50
