"""Fixtures for rendering tests: the shipped templates, contacts and real delivery rows."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from campaigns.config import Settings, load_settings
from campaigns.context import App
from campaigns.store.models import Campaign, CampaignRun, Contact, Delivery, Segment
from campaigns.timespec import utcnow
from tests.conftest import CliRunner, write_config

SHIPPED = Path(__file__).resolve().parents[2] / "templates"


@pytest.fixture
def tdir(tmp_path: Path) -> Path:
    """A copy of the shipped templates the test may add to."""
    target = tmp_path / "templates"
    shutil.copytree(SHIPPED, target)
    return target


@pytest.fixture
def rsettings(tmp_path: Path, db_url: str, tdir: Path) -> Settings:
    """Settings whose templates folder is the copy, sending from a known identity."""
    path = write_config(tmp_path, db_url, 'templates_dir = "templates"\n'
                        '[sending]\nfrom_name = "Example Shop"\nfrom_address = "news@shop.example.com"\n'
                        'outbox_dir = "outbox"\n'
                        '[tracking]\npublic_url = "https://t.example.net"\n')
    return load_settings(path, environ={})


@pytest.fixture
def rapp(rsettings: Settings) -> Iterator[App]:
    a = App(rsettings)
    yield a
    a.engine.dispose()


@pytest.fixture
def rcli(rsettings: Settings) -> CliRunner:
    return CliRunner(rsettings.base_dir / "config.toml")


def add_contact(session: Session, email: str | None, name: str | None = None, phone: str | None = None,
                **attributes: object) -> Contact:
    """A contact row as the importer would leave it."""
    c = Contact(email=email, name=name, phone=phone, attributes=dict(attributes), tags=[])
    session.add(c)
    session.flush()
    return c


def make_campaign(session: Session, name: str = "spring", channel: str = "email",
                  utm: dict[str, str] | None = None, marketing: bool = True) -> tuple[Campaign, CampaignRun]:
    """A campaign with one run, for deliveries to hang off."""
    seg = session.query(Segment).filter_by(name="all").one_or_none()
    if seg is None:
        seg = Segment(name="all", definition="true")
        session.add(seg)
        session.flush()
    camp = Campaign(name=name, channel=channel, segment_id=seg.id, template_name="x", schedule_kind="manual",
                    utm=utm or {}, marketing=marketing)
    session.add(camp)
    session.flush()
    run = CampaignRun(campaign_id=camp.id, scheduled_for=utcnow() - timedelta(minutes=len(name)))
    session.add(run)
    session.flush()
    return camp, run


def make_delivery(session: Session, run: CampaignRun, contact: Contact, step: int = 0) -> Delivery:
    """A queued delivery row (the outbox entry a message is rendered for)."""
    d = Delivery(run_id=run.id, campaign_id=run.campaign_id, contact_id=contact.id, channel="email",
                 step=step, due_at=utcnow())
    session.add(d)
    session.flush()
    return d
