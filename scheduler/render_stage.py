"""Render: claimed rows -> messages ready for hand-over, or render failures with their reason.

One transaction per batch (coupons and tracked links are written). A failure that belongs
to one row (its template is missing or broken, a value does not render) fails that row
with its reason, once; a failure of the database or of the setup (the secret or DKIM key)
is no row's fault and is raised, so the whole batch waits and is retried after backoff.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from campaigns.audience import stopped
from campaigns.context import App
from campaigns.errors import CampaignsError, ConfigError
from campaigns.messages.rendering import (
    RenderedEmail,
    RenderError,
    render_delivery,
    takes_coupons,
)
from campaigns.messages.templates_store import MessageTemplate, load_template
from campaigns.store.db import session_scope
from campaigns.store.models import Campaign, Contact, Delivery, DripEnrollment, first_word
from scheduler.channels import OutgoingEmail, OutgoingSms
from scheduler.outbox import DB_DOWN, Claimed, first_line

Message = OutgoingEmail | OutgoingSms
Rendered = list[tuple[Claimed, Message]]
Failures = list[tuple[Claimed, str]]


@dataclass(frozen=True, slots=True)
class ContactRow:
    """A contact as rendering reads it (campaigns.messages.rendering.Recipient): loaded as
    plain rows, a batch's 500 contacts cost about half of what ORM objects did."""

    id: int
    external_id: str | None
    email: str | None
    phone: str | None
    name: str | None
    timezone: str | None
    locale: str | None
    attributes: dict[str, Any]
    tags: list[Any]

    @property
    def first_name(self) -> str:
        return first_word(self.name)


_CONTACT_COLUMNS = [getattr(Contact, f.name) for f in fields(ContactRow)]


class RenderStage:
    """Renders batches; templates are read once per batch (an edit between batches is picked up)."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._templates: dict[str, tuple[MessageTemplate, bool]] = {}

    def _template(self, name: str) -> tuple[MessageTemplate, bool]:
        """The template, and whether it may take a coupon (looked at once a batch, not per row)."""
        hit = self._templates.get(name)
        if hit is None:
            tmpl = load_template(self.app.settings, name)
            hit = self._templates[name] = (tmpl, takes_coupons(tmpl))
        return hit

    def render(self, batch: list[Claimed], on_email: Callable[[Claimed, OutgoingEmail], object] | None = None
               ) -> tuple[Rendered, Failures]:
        """(row, message) for every row that rendered, (row, reason) for every one that did not;
        `on_email` is given each email as soon as it is rendered (the DKIM signing starts then)."""
        out: Rendered = []
        failed: Failures = []
        self._templates.clear()
        with session_scope(self.app.engine, immediate=True) as session:
            contacts = {c.id: ContactRow(*c) for c in session.execute(
                select(*_CONTACT_COLUMNS).where(Contact.id.in_({r.contact_id for r in batch})))}
            campaigns = {c.id: c for c in session.scalars(select(Campaign).where(Campaign.id.in_({r.campaign_id for r in batch})))}
            # A triggered step renders with what its occurrence carries (purchase, event, date).
            triggered: dict[int, Any] = dict(session.execute(
                select(Delivery.id, DripEnrollment.context).join(DripEnrollment, DripEnrollment.id == Delivery.occurrence)
                .where(Delivery.id.in_([r.id for r in batch]), Delivery.occurrence != 0)).all())
            for row in batch:
                guarded = True
                try:
                    # A savepoint per message only where a failed render has something to undo
                    # (a coupon taken). Tracked-link rows a failed render registered may stay:
                    # they are destinations, shared by every message that links there.
                    template, guarded = self._template(row.template_name or "")
                    with session.begin_nested() if guarded else nullcontext():
                        rendered = render_delivery(
                            session, self.app.settings, template, contact=contacts[row.contact_id],
                            delivery_id=row.id, campaign=campaigns[row.campaign_id], lifecycle=row.lifecycle,
                            rfm_segment=row.rfm_segment, dkim=False,  # signed in the pool, just before hand-over
                            trigger=triggered.get(row.id))
                except RenderError as exc:
                    failed.append((row, f"render: {exc}"))
                    continue
                except (*DB_DOWN, ConfigError):  # the database or the setup, not this row: the whole batch waits
                    raise
                except CampaignsError as exc:  # this row's template: missing folder, missing file, bad name
                    failed.append((row, f"render: {exc}"[:500]))
                    continue
                except SQLAlchemyError as exc:
                    if not guarded:  # the transaction may be unusable now: the batch goes back to the queue
                        raise
                    failed.append((row, f"render: {type(exc).__name__}: {first_line(exc)}"))
                    continue
                except Exception as exc:  # a bug rendering one row must not hold the others
                    failed.append((row, f"render: {type(exc).__name__}: {exc}"[:300]))
                    continue
                if isinstance(rendered, RenderedEmail):
                    email = OutgoingEmail(str(row.id), rendered.mail_from, rendered.to, rendered.data, rendered.message_id,
                                          stopped.checker(row.contact_id, row.channel, row.created_at, campaigns[row.campaign_id].topic_id))
                    out.append((row, email))
                    if on_email is not None:
                        on_email(row, email)
                else:
                    out.append((row, OutgoingSms(str(row.id), rendered.to, rendered.body,
                                                  stopped.checker(row.contact_id, row.channel, row.created_at, campaigns[row.campaign_id].topic_id))))
            session.flush()
        return out, failed
