"""The consent ledger: append-only, derived state, double opt-in tokens (the messageable rule: test_messageable.py)."""

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from campaigns.audience import consent as ledger
from campaigns.audience.contacts import add_contact
from campaigns.errors import ConflictError, InputError, NotFoundError
from campaigns.store.models import ConsentEvent
from campaigns.timespec import utcnow


@pytest.fixture
def person(app, settings):
    with app.session() as s:
        c = add_contact(s, settings, {"email": "pat@example.com", "phone": "+14155550123"})
    return c


def test_state_is_derived_from_the_latest_event_and_nothing_is_overwritten(app, settings, person):
    t0 = utcnow() - timedelta(days=3)
    with app.session() as s:
        ledger.grant(s, settings, person, "email", "form", "v1", occurred_at=t0)
        ledger.revoke(s, person, "email", "unsubscribe link", occurred_at=t0 + timedelta(days=1))
        ledger.grant(s, settings, person, "email", "checkout", "v2", occurred_at=t0 + timedelta(days=2))
        assert s.scalar(select(func.count()).select_from(ConsentEvent)) == 3
        now = ledger.current_state(s, person.id, "email")
        assert (now.action, now.since) == ("granted", t0 + timedelta(days=2))
        then = ledger.current_state(s, person.id, "email", at=t0 + timedelta(days=1, hours=1))
        assert then.action == "revoked"
        assert ledger.current_state(s, person.id, "sms").action is None


def test_sql_rule_agrees_with_the_python_rule(app, settings, person):
    t0 = utcnow() - timedelta(days=5)
    with app.session() as s:
        other = add_contact(s, settings, {"email": "other@example.com"})
        # Events recorded out of order: occurred_at decides, not insertion order.
        ledger.grant(s, settings, person, "email", "form", occurred_at=t0 + timedelta(days=2))
        ledger.revoke(s, person, "email", "old complaint", occurred_at=t0)
        ledger.grant(s, settings, other, "email", "form", occurred_at=t0)
        ledger.revoke(s, other, "email", "reply STOP", occurred_at=t0 + timedelta(days=1))
        rows = dict(s.execute(ledger.current_action_subquery("email")).all())
        assert rows == {person.id: "granted", other.id: "revoked"}
        assert set(s.scalars(ledger.consented_contacts("email", False))) == {person.id}
        for cid in (person.id, other.id):
            assert ledger.current_state(s, cid, "email").action == rows[cid]


def test_double_opt_in_pending_then_confirmed_once(app, settings, person):
    with app.session() as s:
        event, token = ledger.grant(s, settings, person, "email", "newsletter form", double_opt_in=True,
                                    ip="203.0.113.9", user_agent="Firefox")
        assert event.action == "pending" and token and event.token_hash != token
        state = ledger.current_state(s, person.id, "email")
        assert state.pending and not state.allows(False)
    with app.session() as s:
        confirmed = ledger.confirm(s, token, ip="203.0.113.9")
        assert confirmed.action == "confirmed" and confirmed.confirms_event_id == event.id
        assert ledger.current_state(s, person.id, "email").allows(True)
    with app.session() as s, pytest.raises(ConflictError, match="already used"):
        ledger.confirm(s, token)
    with app.session() as s, pytest.raises(NotFoundError):
        ledger.confirm(s, "forged-token")


def test_expired_token_cannot_confirm(app, settings, person):
    with app.session() as s:
        _e, token = ledger.grant(s, settings, person, "email", "form", double_opt_in=True,
                                 occurred_at=utcnow() - timedelta(hours=settings.consent.token_ttl_hours + 1))
    with app.session() as s, pytest.raises(ConflictError, match="expired"):
        ledger.confirm(s, token)


def test_with_double_opt_in_a_plain_grant_is_not_enough(app, settings, person):
    with app.session() as s:
        ledger.grant(s, settings, person, "email", "import", double_opt_in=False)
        state = ledger.current_state(s, person.id, "email")
        assert state.allows(False) and not state.allows(True)
        assert list(s.scalars(ledger.consented_contacts("email", True))) == []


def test_grant_without_source_or_address_is_refused(app, settings):
    with app.session() as s:
        c = add_contact(s, settings, {"email": "only-email@example.com"})
        with pytest.raises(InputError, match="source"):
            ledger.grant(s, settings, c, "email", "  ")
        with pytest.raises(InputError, match="no phone"):
            ledger.grant(s, settings, c, "sms", "form")


def test_consent_cli_grant_revoke_history_and_confirm(cli):
    assert cli("contacts", "add", "--email", "q@example.com").exit_code == 0
    r = cli("consent", "grant", "q@example.com", "--channel", "email", "--source", "web form", "--text", "v3")
    assert r.exit_code == 0, r.output
    assert cli("consent", "revoke", "q@example.com", "--channel", "email", "--source", "call").exit_code == 0
    r = cli("consent", "grant", "q@example.com", "--channel", "email", "--source", "web", "--double-opt-in")
    assert "confirmation link" in r.stdout
    token = r.stdout.split("campaigns consent confirm ")[1].split()[0]
    assert cli("consent", "confirm", token).exit_code == 0
    again = cli("consent", "confirm", token)
    assert again.exit_code == 1 and "already used" in again.stderr
    import json
    hist = json.loads(cli("consent", "history", "q@example.com", "--json").stdout)
    assert [h["action"] for h in hist] == ["granted", "revoked", "pending", "confirmed"]
    assert hist[0]["text"] == "v3"
    bad = cli("consent", "grant", "q@example.com", "--channel", "fax", "--source", "x")
    assert bad.exit_code == 2 and "fax" in bad.output
    missing = cli("consent", "grant", "nobody@example.com", "--channel", "email", "--source", "x")
    assert missing.exit_code == 1 and "no contact 'nobody@example.com'" in missing.stderr


def test_confirmation_tokens_never_look_like_command_options(app):
    from campaigns.audience import consent as ledger
    from campaigns.audience.contacts import add_contact

    with app.session() as s:
        c = add_contact(s, app.settings, {"email": "t@example.com"})
        tokens = [ledger.grant(s, app.settings, c, "email", "web", double_opt_in=True)[1] for _ in range(300)]
    assert all(t and not t.startswith("-") for t in tokens)  # `campaigns consent confirm TOKEN` must parse
