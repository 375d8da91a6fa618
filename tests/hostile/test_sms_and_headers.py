"""SMS length and invisible characters (issue 17): a 120k-character attribute made a
787-segment SMS; bidi overrides and zero-width characters passed into SMS bodies, the
Subject and the To display name."""

from __future__ import annotations

import email
from email import policy

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from campaigns.config import Settings
from campaigns.messages.rendering import RenderError, render_delivery
from campaigns.messages.templates_store import MessageTemplate, lint_sources
from campaigns.store.models import Contact

KEY = "hostile-sms-secret-key-of-32-bytes-or-more"
INVISIBLE = "\u202e\u2066\u200b\u200d\ufeff"


@pytest.fixture
def session():
    engine = create_engine("sqlite://")
    with Session(engine) as s:
        yield s
    engine.dispose()


def _sms(body: str) -> MessageTemplate:
    return MessageTemplate("promo", "sms", None, None, None, body, str(hash(body)), None)  # type: ignore[arg-type]


def _person(**attrs: str) -> Contact:
    return Contact(id=5, phone="+14155550100", email="ann@example.com", name=f"Ann{INVISIBLE} Lee",
                   attributes=attrs, tags=[])


def test_an_sms_over_max_segments_fails_its_delivery_with_the_reason(session) -> None:
    with pytest.raises(RenderError, match=r"template 'promo': the SMS is \d+ segments, over \[sms\] max_segments = 6"):
        render_delivery(session, Settings(secret_key=KEY), _sms("Hi {{ contact.attributes.bio }}"),
                        contact=_person(bio="x" * 120_000), delivery_id=3)
    settings = Settings(secret_key=KEY, sms={"max_segments": 10})  # type: ignore[arg-type]
    out = render_delivery(session, settings, _sms("Hi {{ contact.attributes.bio }}"),
                          contact=_person(bio="x" * 1_000), delivery_id=3)
    assert out.segments == 7  # type: ignore[union-attr]


def test_lint_warns_about_an_sms_longer_than_max_segments() -> None:
    warnings = [i.message for i in lint_sources(_sms("x" * 2_000)) if i.level == "warning"]
    assert any("over [sms] max_segments = 6" in w for w in warnings), warnings
    assert not [i for i in lint_sources(_sms("Hello {{ first_name }}")) if i.level == "warning"]


def test_invisible_characters_are_stripped_from_sms_subject_and_display_name(session) -> None:
    out = render_delivery(session, Settings(secret_key=KEY), _sms(f"Sale{INVISIBLE} {{{{ first_name }}}}"),
                          contact=_person(), delivery_id=3)
    assert not set(INVISIBLE) & set(out.body) and out.encoding == "GSM-7"  # type: ignore[union-attr]
    tmpl = MessageTemplate("news", "email", f"Invoice{INVISIBLE}.pdf {{{{ first_name }}}}",
                           "<p>{{ unsubscribe_url }}</p>", None, None, "v", None)  # type: ignore[arg-type]
    mail = render_delivery(session, Settings(secret_key=KEY), tmpl, contact=_person(), delivery_id=3, dkim=False)
    msg = email.message_from_bytes(mail.data, policy=policy.default)  # type: ignore[union-attr]
    assert str(msg["Subject"]) == "Invoice.pdf Ann" and str(msg["To"]) == "Ann Lee <ann@example.com>"
