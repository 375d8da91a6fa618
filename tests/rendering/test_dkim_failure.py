"""A DKIM signing failure fails that one message with a reason, not an internal error
(issue 17: `rendering` caught `dkim.DKIMException` where `dkim` was the bool parameter)."""

from __future__ import annotations

import dkim
import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from campaigns.config import Settings
from campaigns.messages import dkim_signing
from campaigns.messages.rendering import RenderError, render_delivery
from campaigns.messages.templates_store import MessageTemplate
from campaigns.store.models import Contact


class _FailingSigner:
    def sign(self, message: bytes) -> bytes:  # what the OpenSSL signer raises when dkimpy refuses the message
        raise dkim_signing.DkimSigningError(f"DKIM signing failed: {dkim.DKIMException('key too small')}")


def test_a_dkim_failure_is_a_render_error_naming_the_template(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dkim_signing, "signer", lambda settings: _FailingSigner())
    tmpl = MessageTemplate("welcome", "email", "hi", "<p>x {{ unsubscribe_url }}</p>", None, None, "v1", None)  # type: ignore[arg-type]
    person = Contact(id=5, email="ann@example.com", name="Ann", attributes={}, tags=[])
    engine = create_engine("sqlite://")
    with Session(engine) as session, pytest.raises(RenderError, match="template 'welcome': DKIM signing failed: key too small"):
        render_delivery(session, Settings(secret_key="dkim-test-secret-key-of-32-bytes!"), tmpl, contact=person,
                        delivery_id=3)
    engine.dispose()
