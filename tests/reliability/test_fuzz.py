"""Hostile input, generated: the segment language, template rendering and header building.

The only acceptable failures are our own clear errors (InputError / RenderError and their
kin, each a one-line message); nothing may crash with anything else, reach the database as
SQL, or escape the template sandbox. Figures (examples tried, clear refusals) are recorded.
"""

from __future__ import annotations

import email
from collections import Counter
from email import policy

from hypothesis import HealthCheck, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from campaigns.config import Settings
from campaigns.errors import CampaignsError
from campaigns.messages.email_build import mailbox
from campaigns.messages.rendering import RenderError, render_delivery
from campaigns.messages.templates_store import MessageTemplate
from campaigns.segments import compile_where
from campaigns.store.models import Base, Contact

SECRET = "fuzz-secret-key-at-least-32-bytes-long"
LEAKS = ("<class", "<function", "<module", "<built-in", "__globals__", "uid=", "root:", SECRET)
TALLY: Counter[str] = Counter()
JINJA_BITS = ["{{", "}}", "{%", "%}", "{#", "#}", "contact", ".", "__class__", "__mro__", "__subclasses__()", "|attr(",
              "'__globals__'", ")", "(", "[", "]", "lipsum", "cycler", "range(", "10**9", "*", "~", "for x in ", "endfor",
              "if ", "endif", "set ", "=", "coupon(", "'POOL'", "unsubscribe_url", "first_name", "format", "%s", "\n",
              "<a href=\"", "http://x.example/", "\">", "</a>", "{{ contact.attributes.city }}", "raise", "self", "join"]
SEGMENT_BITS = ["lifecycle", "=", "\"at_risk\"", "and", "or", "not", "(", ")", "rfm.m", ">=", "4", "purchases.count(last=90d)",
                "purchases.total", "500", "attributes.city", "in", "[", "]", "\"Shanghai\"", ",", "consent.sms", "between",
                "30d ago", "2026-01-31", "in_segment(\"vip\")", "'; DROP TABLE contact; --", "contains", "\"@\"", "tags",
                "email", "clv", "loyalty", "\"true_friend\"", "\\", "\"", "1e309", "-", "0x1f", "attributes.\"a b\""]


_ENGINE = create_engine("sqlite://")
Base.metadata.create_all(_ENGINE)


def _template(body: str, subject: str) -> MessageTemplate:
    return MessageTemplate("fuzz", "email", subject, body, None, None, str(hash(body + subject)), None)  # type: ignore[arg-type]


@hsettings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(st.text(max_size=200), st.lists(st.sampled_from(JINJA_BITS), max_size=25).map("".join)),
       subject=st.one_of(st.text(max_size=60), st.lists(st.sampled_from(JINJA_BITS), max_size=8).map("".join)))
def test_template_rendering_never_crashes_or_escapes(body: str, subject: str) -> None:
    engine = _ENGINE
    person = Contact(id=5, email="ann@example.com", name="Ann Lee", attributes={"city": "Paris"}, tags=["vip"])
    with Session(engine) as session:
        try:
            out = render_delivery(session, Settings(secret_key=SECRET), _template(body, subject), contact=person, delivery_id=9)
        except RenderError as exc:
            assert "\n" not in str(exc).strip()
            TALLY["template refused"] += 1
        else:
            TALLY["template rendered"] += 1
            msg = email.message_from_bytes(out.data, policy=policy.default)
            assert msg["To"] and len(msg.get_all("Subject") or []) == 1  # no header smuggled in through the subject
            text = out.data.decode("utf-8", "replace")
            assert not any(leak in text and leak not in body + subject for leak in LEAKS)  # nothing the input did not say
    assert person.attributes == {"city": "Paris"} and person.tags == ["vip"]


@hsettings(max_examples=400, deadline=None)
@given(name=st.text(max_size=60),
       address=st.one_of(st.text(max_size=60), st.emails(), st.tuples(st.emails(), st.sampled_from(
           ["\r\nBcc: victim@example.com", "\nSubject: spam", "\u2028X: y", ">, evil@example.com", ""])).map("".join)))
def test_header_building_refuses_injection(name: str, address: str) -> None:
    try:
        value = mailbox("From", name, address)
    except CampaignsError as exc:
        assert "\n" not in str(exc)
        TALLY["header refused"] += 1
        return
    TALLY["header built"] += 1
    assert "\r" not in value and "\n" not in value
    parsed = email.message_from_string(f"From: {value}\r\nSubject: x\r\n\r\nbody", policy=policy.default)
    assert len(parsed.keys()) == 2  # exactly the headers we wrote


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(source=st.one_of(
    st.text(max_size=120),
    st.lists(st.sampled_from(SEGMENT_BITS), min_size=1, max_size=12).map(" ".join),
    st.lists(st.tuples(st.sampled_from(["name", "email", "attributes.city", "tags", "lifecycle", "rfm.segment"]),
                       st.sampled_from(["=", "!=", "contains", ">=", "<"]),
                       st.text(max_size=30).map(lambda t: '"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"')),
             min_size=1, max_size=3).map(lambda parts: " and ".join(" ".join(p) for p in parts))))
@example(source='lifecycle = "\n"')  # found by this test: the error quoted the newline and ran to two lines
def test_segment_language_never_crashes_or_reaches_sql(app, source: str) -> None:
    with app.session() as s:
        before = s.scalar(select(func.count()).select_from(Contact))
    try:
        where = compile_where(source, app.settings)
        with app.engine.connect() as conn:
            n = conn.execute(select(func.count()).select_from(Contact).where(where)).scalar()
    except CampaignsError as exc:
        assert "\n" not in str(exc).strip() and "Traceback" not in str(exc)
        TALLY["segment refused"] += 1
    else:
        assert isinstance(n, int) and n >= 0
        TALLY["segment ran"] += 1
    with app.session() as s:
        assert s.scalar(select(func.count()).select_from(Contact)) == before


def test_zz_record_fuzz_figures(record) -> None:
    assert sum(TALLY.values()) > 0
    record("hypothesis fuzzing (segments, templates, headers)", "python -m pytest tests/reliability/test_fuzz.py",
           **{k.replace(" ", "_"): v for k, v in sorted(TALLY.items())}, crashes=0, sql_or_sandbox_escapes=0)
