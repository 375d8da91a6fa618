"""Message building rate: `render_delivery` per recipient vs a per-recipient EmailMessage.

All in one process on one core, against a fresh SQLite database filled by
`bench.datagen.populate`. The baseline builds each recipient's message the textbook way
(`email.message.EmailMessage`, default policy, text + HTML alternatives, the same
headers) from the same rendered HTML and text, then serialises it: it does no templating,
no CSS inlining and no link tracking, so `ratio_*_to_emailmessage` compares our whole
path with just the MIME step of the usual one. `build_only` isolates our byte assembly.
"""

from __future__ import annotations

import email
import shutil
import sys
import tempfile
import time
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

from bench.datagen import populate
from campaigns.config import load_settings
from campaigns.messages import email_build
from campaigns.messages.coupons import import_pool
from campaigns.messages.rendering import render_delivery
from campaigns.messages.templates_store import load_template
from campaigns.store import schema
from campaigns.store.db import make_engine, session_scope
from campaigns.store.models import Campaign, CampaignRun, Contact, Delivery, Segment
from campaigns.timespec import utcnow

SCALES = {"small": 500, "default": 3000}
SHIPPED = Path(__file__).resolve().parents[1] / "templates"


def _setup(folder: Path, n: int) -> tuple[Any, Any]:
    shutil.copytree(SHIPPED, folder / "templates")
    (folder / "config.toml").write_text('secret_key = "bench-secret-key-of-at-least-32-bytes"\ntemplates_dir = "templates"\n'
                                        '[database]\nurl = "sqlite:///bench.db"\n')
    settings = load_settings(folder / "config.toml", environ={})
    engine = make_engine(settings.database_url)
    schema.upgrade(engine)
    populate(engine, settings, contacts=n, orders=n, seed=1)
    (folder / "codes.txt").write_text("\n".join(f"WB{i:07d}" for i in range(n)) + "\n")
    with session_scope(engine) as s:
        import_pool(s, "WINBACK", folder / "codes.txt")
        seg = Segment(name="all", definition="true")
        s.add(seg)
        s.flush()
        camp = Campaign(name="bench", channel="email", segment_id=seg.id, template_name="welcome",
                        schedule_kind="manual", utm={"source": "bench", "medium": "email"})
        s.add(camp)
        s.flush()
        run = CampaignRun(campaign_id=camp.id, scheduled_for=utcnow())
        s.add(run)
        s.flush()
        ids = s.scalars(select(Contact.id).order_by(Contact.id)).all()
        s.execute(insert(Delivery), [{"run_id": run.id, "campaign_id": camp.id, "contact_id": cid,
                                      "channel": "email", "step": 0, "due_at": utcnow()} for cid in ids])
    return settings, engine


def _rate(fn: Any, items: list[Any]) -> tuple[float, list[Any]]:
    t0 = time.perf_counter()
    out = [fn(x) for x in items]
    return len(items) / (time.perf_counter() - t0), out


def run(scale: str = "default") -> dict[str, Any]:
    """Render N messages per template; returns messages/s, ratios against EmailMessage."""
    n = SCALES[scale]
    folder = Path(tempfile.mkdtemp(prefix="bench-render-"))
    settings, engine = _setup(folder, n)
    figures: dict[str, Any] = {"messages_per_template": n}
    with session_scope(engine) as s:
        camp = s.scalar(select(Campaign))
        pairs = s.execute(select(Delivery.id, Contact).join(Contact, Contact.id == Delivery.contact_id)).all()
        rendered: dict[str, list[Any]] = {}
        for name in ("welcome", "newsletter", "winback"):
            tmpl = load_template(settings, name)
            render_delivery(s, settings, tmpl, contact=pairs[0][1], delivery_id=pairs[0][0], campaign=camp)  # warm
            rate, rendered[name] = _rate(lambda p, t=tmpl: render_delivery(
                s, settings, t, contact=p[1], delivery_id=p[0], campaign=camp), pairs)
            figures[f"{name}_msgs_per_s"] = round(rate)
        sms = load_template(settings, "flash_sale")
        figures["flash_sale_sms_per_s"] = round(_rate(lambda p: render_delivery(
            s, settings, sms, contact=p[1], delivery_id=p[0], campaign=camp), pairs)[0])

    # The same content (welcome), MIME step only: ours (bytes) vs EmailMessage.
    parts = []
    for out in rendered["welcome"]:
        msg = email.message_from_bytes(out.data, policy=policy.default)
        parts.append((out, msg["To"], msg.get_body(("plain",)).get_content(), msg.get_body(("html",)).get_content(),
                      msg["List-Unsubscribe"]))
    skel = email_build.skeleton(settings.sending.from_name, settings.sending.from_address)

    def ours(p: Any) -> bytes:
        out, to, text, html, _ = p
        return email_build.build_email(skel, to=str(to), subject=out.subject, date=format_datetime(utcnow(), usegmt=True),
                                       message_id=out.message_id, list_unsubscribe=("https://x/u/1", "mailto:u@x"),
                                       html=html, text=text)

    def baseline(p: Any) -> bytes:
        out, to, text, html, lu = p
        m = EmailMessage()
        m["From"] = f"{settings.sending.from_name} <{settings.sending.from_address}>"
        m["To"] = str(to)
        m["Subject"] = out.subject
        m["Date"] = format_datetime(utcnow(), usegmt=True)
        m["Message-ID"] = out.message_id
        m["List-Unsubscribe"] = lu
        m["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        m.set_content(text)
        m.add_alternative(html, subtype="html")
        return bytes(m)

    base_rate = _rate(baseline, parts)[0]
    build_rate = _rate(ours, parts)[0]
    figures["emailmessage_build_only_per_s"] = round(base_rate)
    figures["ours_build_only_per_s"] = round(build_rate)
    figures["ratio_build_only_to_emailmessage"] = round(build_rate / base_rate, 2)
    figures["ratio_welcome_full_render_to_emailmessage"] = round(figures["welcome_msgs_per_s"] / base_rate, 2)
    figures["welcome_bytes"] = len(rendered["welcome"][0].data)
    engine.dispose()
    shutil.rmtree(folder, ignore_errors=True)
    return figures


if __name__ == "__main__":
    for key, value in run(sys.argv[1] if len(sys.argv) > 1 else "default").items():
        print(f"{key:45} {value}")
