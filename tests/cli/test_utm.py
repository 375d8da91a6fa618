"""Tracked links carry utm_source and utm_medium per channel, from [tracking] or the campaign."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import select

from campaigns.store.models import TrackedLink
from tests.conftest import CliRunner, write_config

REPO_TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def _shop(tmp_path: Path, db_url: str, extra: str = "") -> CliRunner:
    cli = CliRunner(write_config(tmp_path, db_url, extra))
    shutil.copytree(REPO_TEMPLATES, tmp_path / "templates", dirs_exist_ok=True)
    assert cli("init").exit_code == 0
    (tmp_path / "c.csv").write_text("email,phone\na@example.com,+14155550100\n")
    assert cli("contacts", "import", str(tmp_path / "c.csv"), "--consent", "email", "--consent", "sms",
               "--source", "form").exit_code == 0
    assert cli("segments", "create", "all", "--where", 'email contains "@"').exit_code == 0
    return cli


def _utms(app) -> list[dict[str, list[str]]]:
    with app.session() as s:
        return [parse_qs(urlsplit(u).query) for u in s.scalars(select(TrackedLink.url))]


def test_links_get_source_and_medium_per_channel(tmp_path, db_url) -> None:
    from campaigns.config import load_settings
    from campaigns.context import App

    cli = _shop(tmp_path, db_url, "[tracking]\nutm_source_sms = \"texts\"\n")
    assert cli("new", "mail", "--segment", "all", "--channel", "email", "--template", "welcome").exit_code == 0
    assert cli("new", "text", "--segment", "all", "--channel", "sms", "--template", "flash_sale",
               "--quiet-hours", "none").exit_code == 0
    assert json.loads(cli("show", "mail", "--json").stdout)["utm"] == {"campaign": "mail", "source": "newsletter",
                                                                       "medium": "email"}
    for name in ("mail", "text"):
        r = cli("send", name, "--now")
        assert r.exit_code == 0, r.output
    app = App(load_settings(tmp_path / "config.toml", environ={}))
    try:
        tagged = {(q["utm_campaign"][0], q["utm_source"][0], q["utm_medium"][0]) for q in _utms(app) if "utm_campaign" in q}
    finally:
        app.engine.dispose()
    assert ("mail", "newsletter", "email") in tagged and ("text", "texts", "sms") in tagged


def test_a_campaign_can_set_its_own_and_a_channel_change_follows_the_defaults(tmp_path, db_url) -> None:
    cli = _shop(tmp_path, db_url)
    assert cli("new", "x", "--segment", "all", "--channel", "email", "--template", "welcome",
               "--utm-source", "partner").exit_code == 0
    assert json.loads(cli("show", "x", "--json").stdout)["utm"] == {"campaign": "x", "source": "partner", "medium": "email"}
    assert cli("edit", "x", "--channel", "sms", "--template", "flash_sale").exit_code == 0
    assert json.loads(cli("show", "x", "--json").stdout)["utm"] == {"campaign": "x", "source": "partner", "medium": "sms"}
