"""Render: claimed rows -> messages ready for hand-over, or render failures with their reason.

A batch is rendered in chunks (a wave's worth each, `Chunk`), each in its own transaction
(coupons and tracked links are written), one message per `step`: the hand-over renders the
next wave's chunk between the steps of the wave in flight, so the sender renders while the
server reads. A chunk's messages go out only after its transaction committed. A failure
that belongs to one row (its template is missing or broken, a value does not render) fails
that row with its reason, once; a failure of the database or of the setup (the secret or
DKIM key) is no row's fault and is raised, so the rows not handed over wait and are retried
after backoff.
"""

from __future__ import annotations

from contextlib import ExitStack, nullcontext
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
from campaigns.store.db import session_factory, session_scope
from campaigns.store.models import Campaign, Contact, Delivery, DripEnrollment
from scheduler.channels import OutgoingEmail, OutgoingSms
from scheduler.outbox import DB_DOWN, Claimed, first_line

Message = OutgoingEmail | OutgoingSms
Rendered = list[tuple[Claimed, Message]]
Failures = list[tuple[Claimed, str]]


class RenderStage:
    """Renders batches; templates are read once per batch (an edit between batches is picked up)."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._templates: dict[str, MessageTemplate] = {}
        self.contacts: dict[int, Contact] = {}
        self.campaigns: dict[int, Campaign] = {}
        self.triggered: dict[int, Any] = {}

    def new_batch(self, rows: list[Claimed]) -> None:
        """Read the batch's contacts, campaigns and trigger contexts (three queries for the
        whole batch, not per chunk), and its templates afresh (an edit between batches is
        picked up). The objects are read in a transaction of their own, as when the claim
        read the rows: the chunks' transactions only write (coupons, tracked links)."""
        self._templates.clear()
        with session_factory(self.app.engine)() as session:
            self.contacts = {c.id: c for c in session.scalars(
                select(Contact).where(Contact.id.in_({r.contact_id for r in rows})))}
            self.campaigns = {c.id: c for c in session.scalars(
                select(Campaign).where(Campaign.id.in_({r.campaign_id for r in rows})))}
            # A triggered step renders with what its occurrence carries (purchase, event, date).
            self.triggered = dict(session.execute(
                select(Delivery.id, DripEnrollment.context).join(DripEnrollment, DripEnrollment.id == Delivery.occurrence)
                .where(Delivery.id.in_([r.id for r in rows]), Delivery.occurrence != 0)).all())

    def template(self, name: str) -> MessageTemplate:
        tmpl = self._templates.get(name)
        if tmpl is None:
            tmpl = self._templates[name] = load_template(self.app.settings, name)
        return tmpl

    def chunk(self, rows: list[Claimed]) -> Chunk:
        """Start rendering `rows` in one transaction (the database read happens here)."""
        return Chunk(self, rows)


class _Abandoned(Exception):
    """Rolls a chunk's transaction back (nothing of it is handed over)."""


class Chunk:
    """Rows rendered one `step` at a time inside one open transaction; `close` commits.

    On SQLite the transaction holds the write lock (BEGIN IMMEDIATE) from the first read to
    `close` or `abandon`: the owner must close it before its own next write, and may await
    between steps only for work that does not write to the database.
    """

    def __init__(self, stage: RenderStage, rows: list[Claimed]) -> None:
        self.stage = stage
        self.rows = rows
        self._next = 0
        self.out: Rendered = []
        self.failed: Failures = []
        self._stack = ExitStack()
        self.session = self._stack.enter_context(session_scope(stage.app.engine, immediate=True))

    def step(self) -> bool:
        """Render the next row; True while rows remain. Raises (and rolls back) on a failure
        of the database or the setup."""
        if self._next >= len(self.rows):
            return False
        row = self.rows[self._next]
        self._next += 1
        try:
            self._render(row)
        except BaseException:
            self.abandon()
            raise
        return self._next < len(self.rows)

    def close(self) -> tuple[Rendered, Failures]:
        """Commit: the rendered messages may be handed over now."""
        try:
            self.session.flush()
        except BaseException:
            self.abandon()
            raise
        self._stack.close()
        return self.out, self.failed

    def abandon(self) -> None:
        """Roll back; nothing rendered in this chunk may go out."""
        self._stack.__exit__(_Abandoned, _Abandoned(), None)

    def _render(self, row: Claimed) -> None:
        session, stage = self.session, self.stage
        campaign = stage.campaigns[row.campaign_id]
        guarded = True
        try:
            template = stage.template(row.template_name or "")
            # A savepoint per message only where a failed render has something to undo
            # (a coupon taken). Tracked-link rows a failed render registered may stay:
            # they are destinations, shared by every message that links there.
            guarded = takes_coupons(template)
            with session.begin_nested() if guarded else nullcontext():
                rendered = render_delivery(
                    session, stage.app.settings, template, contact=stage.contacts[row.contact_id],
                    delivery_id=row.id, campaign=campaign, lifecycle=row.lifecycle,
                    rfm_segment=row.rfm_segment, dkim=False,  # signed on the signing threads, just before hand-over
                    trigger=stage.triggered.get(row.id))
        except RenderError as exc:
            self.failed.append((row, f"render: {exc}"))
            return
        except (*DB_DOWN, ConfigError):  # the database or the setup, not this row: the rows not handed over wait
            raise
        except CampaignsError as exc:  # this row's template: missing folder, missing file, bad name
            self.failed.append((row, f"render: {exc}"[:500]))
            return
        except SQLAlchemyError as exc:
            if not guarded:  # the transaction may be unusable now: the rows go back to the queue
                raise
            self.failed.append((row, f"render: {type(exc).__name__}: {first_line(exc)}"))
            return
        except Exception as exc:  # a bug rendering one row must not hold the others
            self.failed.append((row, f"render: {type(exc).__name__}: {exc}"[:300]))
            return
        stop = stopped.checker(row.contact_id, row.channel, row.created_at, campaign.topic_id)
        if isinstance(rendered, RenderedEmail):
            self.out.append((row, OutgoingEmail(str(row.id), rendered.mail_from, rendered.to, rendered.data,
                                                rendered.message_id, stop)))
        else:
            self.out.append((row, OutgoingSms(str(row.id), rendered.to, rendered.body, stop)))
