"""Custom events: `track event`, `events import` (CSV, JSON lines), the signed webhook, and the
segment fields events.NAME.count(last=...) / events.NAME.last_at. Idempotent by key everywhere."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import func, select

from campaigns.config import load_settings
from campaigns.context import App
from campaigns.segments import create_segment, members_query
from campaigns.store.models import Contact, CustomEvent, Segment
from campaigns.timespec import utcnow
from campaigns.tracking.app import create_app, webhook_signature
from tests.conftest import write_config
from tests.support.http import ServedApp
from tests.support.smtp import free_port

CONTACTS = "external_id,email,phone\nC1,ann@example.com,\nC2,bob@example.com,+14155550101\n"
SECRET = "test-webhook-secret-0123456789abcdef"


def _contacts(cli, tmp_path):
    (tmp_path / "c.csv").write_text(CONTACTS)
    assert cli("contacts", "import", str(tmp_path / "c.csv")).exit_code == 0


def _events(app):
    with app.session() as s:
        return [(e.contact_id, e.name, e.properties, e.source) for e in s.scalars(select(CustomEvent).order_by(CustomEvent.id))]


def test_track_event_records_once_per_id_and_keeps_typed_properties(cli, app, tmp_path):
    _contacts(cli, tmp_path)
    r = cli("track", "event", "ann@example.com", "cart_abandoned", "--prop", "sku=A1", "--prop", "qty=2", "--id", "cart-9")
    assert r.exit_code == 0, r.output
    again = cli("track", "event", "ann@example.com", "cart_abandoned", "--prop", "sku=A1", "--prop", "qty=2", "--id", "cart-9", "--json")
    assert again.exit_code == 0 and json.loads(again.stdout)["created"] is False
    assert [(n, p) for _, n, p, _ in _events(app)] == [("cart_abandoned", {"sku": "A1", "qty": 2})]


def test_track_event_refuses_unknown_contact_bad_name_and_future_time_in_one_line(cli, app, tmp_path):
    _contacts(cli, tmp_path)
    for args, field in ((("nobody@example.com", "signed_up"), "contact"), (("C1", "9lives"), "name"),
                        (("C1", "ok", "--at", "2999-01-01"), "occurred_at"), (("C1", "ok", "--prop", "novalue"), "--prop")):
        r = cli("track", "event", *args)
        assert r.exit_code != 0, args
        assert field in r.stderr and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.output
    assert _events(app) == []


def test_events_import_csv_twice_records_each_event_once(cli, app, tmp_path):
    _contacts(cli, tmp_path)
    path = tmp_path / "events.csv"
    path.write_text('contact,name,occurred_at,properties\n'
                    'C1,cart_abandoned,2026-01-05 10:00,"{""sku"": ""A1""}"\n'
                    'bob@example.com,viewed,2026-01-05T11:00:00Z,\n')
    r = cli("events", "import", str(path), "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["created"] == 2
    r = cli("events", "import", str(path), "--json")
    assert json.loads(r.stdout) | {"rejects_file": None} == {"rows": 2, "created": 0, "unchanged": 2, "rejected": 0, "rejects_file": None}
    assert len(_events(app)) == 2


def test_events_import_json_lines_names_every_bad_row_and_writes_nothing(cli, app, tmp_path):
    _contacts(cli, tmp_path)
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join([
        json.dumps({"email": "ann@example.com", "name": "viewed", "occurred_at": "2026-01-05T10:00:00Z", "properties": {"page": "/x"}}),
        json.dumps({"contact": "C9", "name": "viewed", "occurred_at": "2026-01-05T10:00:00Z"}),
        json.dumps({"contact": "C1", "name": "viewed", "occurred_at": "2026-01-05T10:00:00Z", "properties": {"a": {"b": 1}}}),
        "not json",
        json.dumps({"contact": "C1", "name": "viewed"}),
    ]) + "\n")
    r = cli("events", "import", str(path))
    assert r.exit_code != 0
    for line, field in ((2, "contact"), (3, "properties"), (4, None), (5, "occurred_at")):
        assert f"line {line}" + (f", field '{field}'" if field else "") in r.output, r.output
    assert _events(app) == []
    r = cli("events", "import", str(path), "--skip-invalid", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["created"] == 1 and json.loads(r.stdout)["rejected"] == 4
    assert [(n, p) for _, n, p, _ in _events(app)] == [("viewed", {"page": "/x"})]


def test_events_command_still_lists_a_contacts_responses(cli, tmp_path):
    _contacts(cli, tmp_path)
    r = cli("events", "ann@example.com", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout) == []


def test_segment_fields_count_events_in_a_window_and_their_last_time(cli, app, tmp_path):
    _contacts(cli, tmp_path)
    now = utcnow()
    for contact, days in (("C1", 1), ("C1", 3), ("C1", 20), ("C2", 10)):
        at = (now - timedelta(days=days)).isoformat()
        assert cli("track", "event", contact, "cart_abandoned", "--at", at).exit_code == 0
    wanted = {
        "events.cart_abandoned.count(last=7d) >= 2": {"C1"},
        "events.cart_abandoned.count(last=7d) = 0": {"C2"},
        "events.cart_abandoned.count > 0": {"C1", "C2"},
        "events.cart_abandoned.last_at < 5d ago": {"C2"},
        "events.other.count = 0": {"C1", "C2"},
        "events.other.last_at = null": {"C1", "C2"},
    }
    with app.session() as s:
        for i, (where, ids) in enumerate(wanted.items()):
            create_segment(s, app.settings, f"s{i}", where)
            seg = s.scalar(select(Segment).where(Segment.name == f"s{i}"))
            ids_of = {c.id: c.external_id for c in s.scalars(select(Contact))}
            got = {ids_of[row.id] for row in s.execute(members_query(s, seg, app.settings))}
            assert got == ids, where
    bad = cli("segments", "create", "x", "--where", "events.cart_abandoned.last_at(last=7d) > 1d ago")
    assert bad.exit_code != 0 and "window" in bad.stderr


def _site(tmp_path, db_url):
    shutil.copytree(Path(__file__).resolve().parents[2] / "templates", tmp_path / "templates", dirs_exist_ok=True)
    port = free_port()
    cfg = write_config(tmp_path, db_url, f'[tracking]\npublic_url = "http://127.0.0.1:{port}"\nwebhook_secret = "{SECRET}"\n')
    return App(load_settings(cfg, environ={})), port


def test_signed_event_webhook_records_once_and_refuses_bad_fields_and_bad_signatures(tmp_path, db_url):
    app, port = _site(tmp_path, db_url)
    from campaigns.audience.contacts import add_contact
    with app.session() as s:
        add_contact(s, app.settings, {"email": "ann@example.com", "external_id": "C1"})
    with ServedApp(create_app(app.settings, app), port) as base:
        def post(payload, sig=None):
            body = json.dumps(payload).encode()
            return httpx.post(f"{base}/webhooks/event", content=body,
                              headers={"X-Campaigns-Signature": sig if sig is not None else webhook_signature(app.settings, body)})

        good = {"external_id": "C1", "name": "cart_abandoned", "properties": {"total": 42.5}, "id": "evt-1"}
        first = post(good)
        assert first.status_code == 201, first.text
        replay = post(good)
        assert replay.status_code == 200 and replay.json()["created"] is False
        assert post(good, sig="sha256=00").status_code in (401, 403)
        for payload, field in (({**good, "id": "e2", "name": ""}, "name"), ({**good, "id": "e3", "external_id": "C9"}, "external_id"),
                               ({**good, "id": "e4", "occurred_at": "yesterday-ish"}, "occurred_at"),
                               ({**good, "id": "e5", "properties": [1]}, "properties")):
            r = post(payload)
            assert r.status_code == 400 and field in r.text, (payload, r.text)
    with app.session() as s:
        assert s.scalar(select(func.count()).select_from(CustomEvent)) == 1
        assert s.scalar(select(CustomEvent.source)) == "webhook"
    app.engine.dispose()
