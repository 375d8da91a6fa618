"""The one messageable rule: consent + double opt-in + suppression by keyed hash, at a time."""

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from campaigns.audience import consent as ledger
from campaigns.audience import suppression
from campaigns.audience.contacts import add_contact
from campaigns.audience.messageable import may_message, messageable_ids, rule
from campaigns.store.models import Contact
from campaigns.timespec import utcnow


@pytest.fixture
def person(app, settings):
    with app.session() as s:
        c = add_contact(s, settings, {"email": "pat@example.com", "phone": "+14155550123"})
    return c


def test_may_message_needs_consent_and_no_suppression(app, settings, person):
    with app.session() as s:
        assert not may_message(s, settings, person, "email")
        ledger.grant(s, settings, person, "email", "form")
        assert may_message(s, settings, person, "email")
        suppression.add(s, settings, "email", "PAT@example.com", "hard_bounce")  # matched by keyed hash
        assert not may_message(s, settings, person, "email")
        assert s.scalar(select(func.count()).select_from(
            select(ledger.consented_contacts("email", False).subquery()).subquery())) == 1
        assert may_message(s, settings, person, "sms") is False


def test_the_rule_is_asked_at_a_time_and_for_a_set(app, settings, person):
    t0 = utcnow() - timedelta(days=3)
    with app.session() as s:
        other = add_contact(s, settings, {"email": "lee@example.com"})
        no_phone = add_contact(s, settings, {"email": "kim@example.com"})
        ledger.grant(s, settings, person, "sms", "form", occurred_at=t0)
        ledger.revoke(s, person, "sms", "STOP", occurred_at=t0 + timedelta(days=1))
        ledger.grant(s, settings, other, "email", "form", occurred_at=t0)
        ids = [person.id, other.id, no_phone.id]
        assert messageable_ids(s, settings, "sms", ids, t0 + timedelta(hours=1)) == {person.id}
        assert messageable_ids(s, settings, "sms", ids, utcnow()) == set()  # revoked since
        assert messageable_ids(s, settings, "email", ids, utcnow()) == {other.id}
        assert messageable_ids(s, settings, "email", ids, t0 - timedelta(hours=1)) == set()  # before the grant
        assert messageable_ids(s, settings, "email", [], utcnow()) == set()


def test_double_opt_in_needs_the_confirmation(app, settings, person):
    with app.session() as s:
        _, token = ledger.grant(s, settings, person, "email", "form", double_opt_in=True)
        strict = settings.model_copy(update={"consent": settings.consent.model_copy(update={"double_opt_in": True})})
        assert not may_message(s, strict, person, "email")  # pending changes nothing
        ledger.confirm(s, token)
        assert may_message(s, strict, person, "email")
        ledger.grant(s, settings, person, "sms", "form", double_opt_in=False)
        assert not may_message(s, strict, person, "sms")  # granted is not confirmed
        assert may_message(s, settings, person, "sms")


def test_erased_contacts_are_never_messageable(app, settings, person):
    with app.session() as s:
        ledger.grant(s, settings, person, "email", "form")
        s.get(Contact, person.id).erased_at = utcnow()
        s.flush()
        assert messageable_ids(s, settings, "email", [person.id], utcnow()) == set()
        parts = rule("email", False, utcnow())
        row = s.execute(select(parts.not_erased, parts.has_address, parts.consented, parts.suppressed)
                        .where(Contact.id == person.id)).one()
        assert tuple(map(bool, row)) == (False, True, True, False)  # each part says why
