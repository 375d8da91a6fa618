"""`campaigns demo` end to end, as a new user runs it: a real process, a real folder.

The demo drives the real SMTP server, tracking app, scheduler and dispatcher, so this
test checks what it leaves behind against the database it wrote, not against fixed
numbers: the report's figures must be the database's, nobody may get a message twice,
the holdout must get nothing, texts must respect quiet hours, and the commands the demo
suggests must run in its folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from campaigns.config import load_settings
from campaigns.context import App
from campaigns.store.models import Attribution, Campaign, Contact, Delivery, Event


def _run(args: list[str], cwd: Path, columns: int = 200) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNS_")} | {"COLUMNS": str(columns)}
    return subprocess.run([sys.executable, "-m", "campaigns", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    folder = tmp_path_factory.mktemp("demo") / "shop"
    # An ordinary 80-column terminal, as a new user's (the output must survive it).
    done = _run(["demo", "--dir", str(folder), "--contacts", "400", "--seed", "7"], cwd=folder.parent, columns=80)
    assert done.returncode == 0, done.stderr + done.stdout
    return folder, done


@pytest.fixture
def shop(demo: tuple[Path, subprocess.CompletedProcess[str]]) -> Iterator[App]:
    """The demo folder's database, as the CLI there opens it."""
    app = App(load_settings(demo[0] / "config.toml", environ={}))
    yield app
    app.engine.dispose()


def test_the_report_figures_are_the_databases(demo: tuple[Path, subprocess.CompletedProcess[str]], shop: App) -> None:
    folder, _ = demo
    report = _run(["report", "winback", "--json"], cwd=folder)
    assert report.returncode == 0, report.stderr
    funnel = json.loads(report.stdout)["funnel"]
    with shop.session() as s:
        c = s.scalar(select(Campaign).where(Campaign.name == "winback"))
        states = Counter(dict(s.execute(select(Delivery.state, func.count()).where(Delivery.campaign_id == c.id)
                                        .group_by(Delivery.state)).all()))
        opens = s.scalar(select(func.count(func.distinct(Event.delivery_id)))
                         .where(Event.campaign_id == c.id, Event.type == "open", Event.is_machine.is_(False)))
        converters = s.scalar(select(func.count(func.distinct(Attribution.contact_id)))
                              .where(Attribution.campaign_id == c.id, Attribution.is_holdout.is_(False)))
    assert funnel["sent"] == states["sent"] > 0
    assert funnel["held_out"] == states["held_out"] > 0
    assert funnel["opened"] == opens > 0
    assert funnel["converted"] == converters > 0
    assert funnel["clicked"] > 0 and funnel["revenue"] > 0


def test_nobody_is_messaged_twice_and_the_holdout_gets_nothing(shop: App) -> None:
    with shop.session() as s:
        per = s.execute(select(Delivery.campaign_id, Delivery.step, Delivery.contact_id, func.count())
                        .group_by(Delivery.campaign_id, Delivery.step, Delivery.contact_id)).all()
        assert per and all(n == 1 for *_, n in per)
        held = s.execute(select(Delivery.state, Delivery.sent_at).where(Delivery.is_holdout.is_(True))).all()
        assert held and all(state == "held_out" and sent is None for state, sent in held)
        touched = s.scalar(select(func.count()).select_from(Event).join(Delivery, Delivery.id == Event.delivery_id)
                           .where(Delivery.is_holdout.is_(True)))
        assert touched == 0
        statuses = {name: status for name, status in s.execute(select(Campaign.name, Campaign.status))}
        assert statuses["winback"] == "completed" and statuses["flash-sale"] == "completed"
        # The drip's second step (three days in) went out too.
        steps = set(s.scalars(select(Delivery.step).join(Campaign).where(Campaign.name == "welcome-drip",
                                                                          Delivery.state == "sent")))
        assert steps == {0, 1}


def test_texts_went_out_outside_quiet_hours_in_each_recipients_zone(demo: tuple[Path, subprocess.CompletedProcess[str]], shop: App) -> None:
    folder, _ = demo
    with shop.session() as s:
        rows = s.execute(select(Delivery.sent_at, Contact.timezone).join(Contact, Contact.id == Delivery.contact_id)
                         .join(Campaign).where(Campaign.name == "flash-sale", Delivery.state == "sent")).all()
    assert rows
    for sent_at, tz in rows:
        local = sent_at.astimezone(ZoneInfo(tz or "UTC"))
        assert 8 <= local.hour < 21, (sent_at, tz)
    lines = (folder / "outbox" / "sms.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(rows)
    assert all("STOP" in json.loads(line)["body"] for line in lines)


def test_the_html_report_is_self_contained(demo: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    folder, done = demo
    page = (folder / "report-winback.html").read_text(encoding="utf-8")
    assert "<svg" in page and "winback" in page
    assert 'src="http' not in page and "<link" not in page and "@import" not in page
    assert "demo finished" in done.stdout


def test_the_suggested_commands_run_in_the_folder(demo: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    folder, _ = demo
    for args in (["report", "winback"], ["events", "winback", "--limit", "10"], ["customers", "lifecycle"],
                 ["status"], ["report"], ["list"], ["report", "loyalty"]):
        done = _run(args, cwd=folder)
        assert done.returncode == 0, (args, done.stderr)
        assert "Traceback" not in done.stderr


def test_the_output_is_words_and_the_suggested_command_pastes_whole(demo: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    """No raw Python dicts in the progress lines, and the `Try:` command on one line even at 80 columns."""
    folder, done = demo
    assert "{" not in done.stdout and "responses so far: none yet" in done.stdout
    assert "opens" in done.stdout and "orders" in done.stdout
    tried = [line for line in done.stdout.splitlines() if line.startswith("Try: ")]
    assert tried == [f"Try: cd {folder} && campaigns report winback && campaigns events winback --limit 10 && "
                     "campaigns customers lifecycle && campaigns status"]


def test_a_second_demo_in_the_same_folder_is_refused(demo: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    folder, _ = demo
    again = _run(["demo", "--dir", str(folder)], cwd=folder.parent)
    assert again.returncode != 0
    assert "not empty" in again.stderr + again.stdout and "Traceback" not in again.stderr
    assert (folder / "demo.db").exists()


def test_a_bad_dir_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    for target, says in ((tmp_path / "a-file", "is a file, not a folder"), (Path("/proc/no-such/demo"), "cannot create")):
        done = _run(["demo", "--dir", str(target)], cwd=tmp_path)
        assert done.returncode == 1, done.stderr
        assert says in done.stderr and "--dir" in done.stderr
        assert "Traceback" not in done.stderr and "internal error" not in done.stderr


def test_the_demo_prints_the_true_lift_beside_the_measured_one(demo: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    """The simulated world's win-back effect is known (simulate.TRUE_LIFT); the demo says it and what the report measured."""
    from campaigns.demo.simulate import TRUE_LIFT

    folder, done = demo
    assert f"true lift is {TRUE_LIFT['winback'] * 100:+.1f} points; the report measured" in " ".join(done.stdout.split())
    lf = json.loads(_run(["report", "winback", "--json"], cwd=folder).stdout)["lift"]
    assert lf["holdout"]["contacts"] > 0 and lf["treated"]["rate"] > lf["holdout"]["rate"]


def test_the_post_purchase_journey_followed_up_purchases_made_during_the_demo(shop: App) -> None:
    from campaigns.store.models import DripEnrollment, Purchase

    with shop.session() as s:
        journey = s.scalar(select(Campaign).where(Campaign.name == "post-purchase"))
        assert journey is not None and journey.trigger == "purchase"
        enrolled = s.execute(select(DripEnrollment.contact_id, DripEnrollment.occurrence, DripEnrollment.entered_at)
                             .where(DripEnrollment.campaign_id == journey.id)).all()
        assert enrolled
        for contact_id, occurrence, entered in enrolled:  # each one a purchase of that contact, made in the demo
            purchase = s.get(Purchase, int(occurrence.split(":")[1]))
            assert purchase is not None and purchase.contact_id == contact_id and purchase.occurred_at == entered
            assert purchase.occurred_at >= journey.activated_at
        sent = s.scalar(select(func.count()).select_from(Delivery).where(Delivery.campaign_id == journey.id,
                                                                         Delivery.state == "sent"))
        assert sent and sent > 0


def test_the_stage_winback_journey_enrols_only_customers_who_moved_into_at_risk_during_the_demo(shop: App) -> None:
    from campaigns.segments import profiles
    from campaigns.store.models import DripEnrollment

    with shop.session() as s:
        journey = s.scalar(select(Campaign).where(Campaign.name == "stage-winback"))
        assert journey is not None and journey.trigger == "lifecycle:at_risk"
        enrolled = s.execute(select(DripEnrollment.contact_id, DripEnrollment.entered_at)
                             .where(DripEnrollment.campaign_id == journey.id)).all()
        launch = journey.activated_at
        assert launch is not None and enrolled  # seed 7, 400 contacts: one customer slips into at_risk in the 8 days
        ids = [cid for cid, _at in enrolled]
        before = profiles(s, shop.settings, ids, at=launch)  # nobody already at risk at launch: they did not move
        assert all(before[cid].lifecycle != "at_risk" for cid in ids if cid in before)
        for cid, entered in enrolled:
            assert profiles(s, shop.settings, [cid], at=entered)[cid].lifecycle == "at_risk"
