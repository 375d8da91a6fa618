"""Templates -> messages: sandboxed Jinja2 with caps, a plain-data context, tracked links.

Templates are user input. They render in `ImmutableSandboxedEnvironment` with
`StrictUndefined`; the context holds plain dicts and strings (never ORM objects); caps on
time and size stop runaway loops. Any per-contact failure is a `RenderError` the
dispatcher records on that one delivery.
"""

from __future__ import annotations

import html as htmllib
import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from email.utils import format_datetime
from functools import lru_cache
from typing import Any, Generic, Literal, Protocol, TypeVar, cast

import css_inline
import inscriptis
from inscriptis.model.config import ParserConfig
from jinja2 import Template as JinjaTemplate
from jinja2 import TemplateError, UndefinedError, meta, nodes
from sqlalchemy.orm import Session

from campaigns.audience import consent as ledger
from campaigns.audience import consent_requests
from campaigns.config import Settings
from campaigns.errors import CampaignsError, InputError
from campaigns.messages import coupons, dkim_signing, email_build, links, sms_text
from campaigns.messages.link_registry import LinkRewriter
from campaigns.messages.sandbox import (  # noqa: F401 - re-exported for callers and tests
    _WATCHDOG,
    HTML_ENV,
    MAX_OUTPUT_CHARS,
    MAX_RENDER_SECONDS,
    TEXT_ENV,
    CapExceeded,
    check_html_nesting,
    check_output,
    compile_checked,
    parse_checked,
    render_capped,
    template_line,
)
from campaigns.messages.templates_store import MessageTemplate
from campaigns.store.models import Campaign
from campaigns.timespec import utcnow

PREVIEW_DELIVERY_ID = 0  # previews and test sends: no coupon is taken, nothing is recorded
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)
_JINJA = re.compile(r"{{.*?}}|{%.*?%}|{#.*?#}", re.DOTALL)
_JINJA_OPEN = re.compile(r"{{|{%|{#")
_TEXT_CONFIG = ParserConfig(display_links=True)
# Only URLs the template author wrote become tracked links. Contact data enters the context
# through `_mark_data`, which breaks "://" with a private-use character, so the link
# rewriter cannot see a URL that came from a contact; the mark is removed after rewriting.
_DATA_MARK = "\ue000"


def _mark_data(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("://", ":" + _DATA_MARK + "//") if "://" in value else value
    if isinstance(value, dict):
        return {k: _mark_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mark_data(v) for v in value]
    return value
_INLINER = css_inline.CSSInliner(keep_style_tags=False, load_remote_stylesheets=False)


class RenderError(CampaignsError):
    """This contact's message could not be built; the reason is shown in reports."""


@dataclass(frozen=True)
class RenderedEmail:
    """A complete message: envelope sender, recipient and RFC 5322 bytes."""

    to: str
    mail_from: str
    data: bytes
    message_id: str
    subject: str


@dataclass(frozen=True)
class RenderedSms:
    """An SMS body with its encoding and billed segments."""

    to: str
    body: str
    encoding: Literal["GSM-7", "UCS-2"]
    segments: int


@dataclass(frozen=True)
class _Compiled:
    subject: JinjaTemplate | None
    html: JinjaTemplate | None
    text: JinjaTemplate | None  # the author's text part, or one derived from the HTML source
    derived_per_message: bool  # derive the text part from each rendered HTML instead
    sms: JinjaTemplate | None
    has_css: bool
    reads: tuple[str, ...] | None = None  # what its parts read, when a render can be reused (`_reuse_key`)


_COMPILED: OrderedDict[str, _Compiled] = OrderedDict()
_COMPILED_LOCK = threading.Lock()


def html_text(html: str) -> str:
    """HTML as plain text: a table layout's cells come padded to the widest line, so the
    trailing spaces go, and runs of blank lines shrink to two."""
    text = re.sub(r"[ \t]+$", "", inscriptis.get_text(html, _TEXT_CONFIG), flags=re.MULTILINE)
    return re.sub(r"\n{4,}", "\n\n\n", text).strip("\n") + "\n"


def derive_text_source(html_source: str) -> str | None:
    """A text template made from an HTML template once (tags kept), or None when unsafe.

    Jinja tags are swapped for inert tokens, the HTML is turned into text, and the tokens
    are put back; if any token was reordered, or a statement or comment was lost, the
    caller derives per message. An expression (`{{ ... }}`) the text form drops, like the
    one in `<title>`, may go: it prints nothing there either, and has no effect the HTML
    part's render does not already have (templates cannot assign in an expression, and a
    coupon is taken once per message however often it is asked for).
    """
    tags: list[str] = []

    def token(m: re.Match[str]) -> str:
        tags.append(m.group(0))
        return f"qqjj{len(tags) - 1}jjqq"

    text = html_text(_JINJA.sub(token, html_source))
    found = [int(n) for n in re.findall(r"qqjj(\d+)jjqq", text)]
    lost = set(range(len(tags))) - set(found)
    if (found != sorted(set(found)) or any(not tags[n].startswith("{{") for n in lost)
            or _JINJA_OPEN.search(text)):  # reordered or repeated, a statement lost, or entities that became tags
        return None

    def line_start(m: re.Match[str]) -> str:  # a line begins after statements that print nothing: no indent
        quiet = all(tags[int(n)].startswith(("{%", "{#")) for n in re.findall(r"qqjj(\d+)jjqq", m.group(1)))
        return m.group(1) if quiet else m.group(0)

    text = re.sub(r"(?m)^((?:qqjj\d+jjqq)+)[ \t]+", line_start, text)
    return re.sub(r"qqjj(\d+)jjqq", lambda m: tags[int(m.group(1))], text)


def _derived_text(source: str | None) -> tuple[JinjaTemplate, nodes.Template] | None:
    try:
        return _checked(TEXT_ENV, source) if source is not None else None
    except (TemplateError, CapExceeded):  # entities that decode to Jinja syntax: derive per message instead
        return None


def _checked(env: Any, source: str) -> tuple[JinjaTemplate, nodes.Template]:
    """`compile_checked`, keeping the parsed tree (what `_reads` looks at): each part is
    parsed once."""
    ast = parse_checked(env, source)
    return env.from_string(ast), ast


def takes_coupons(tmpl: MessageTemplate) -> bool:
    """Whether rendering `tmpl` may take a coupon code (a write to undo if the render fails).
    Over-approximate on purpose: any mention of `coupon` in any part counts."""
    return any("coupon" in (part or "") for part in (tmpl.subject, tmpl.html, tmpl.text, tmpl.sms_body))


def compile_template(tmpl: MessageTemplate) -> _Compiled:
    """Each template version is compiled once per process (syntax errors: RenderError)."""
    key = f"{tmpl.name}:{tmpl.version_hash}"
    with _COMPILED_LOCK:
        hit = _COMPILED.get(key)
        if hit is not None:
            _COMPILED.move_to_end(key)
            return hit
    try:
        if tmpl.channel == "sms":
            compiled = _Compiled(None, None, None, False, compile_checked(TEXT_ENV, tmpl.sms_body or ""), False)
        else:
            html = tmpl.html or ""
            parts = [_checked(TEXT_ENV, tmpl.subject or ""), _checked(HTML_ENV, html)]
            text = _checked(TEXT_ENV, tmpl.text) if tmpl.text is not None else _derived_text(derive_text_source(html))
            parts += [text] if text is not None else []
            compiled = _Compiled(parts[0][0], parts[1][0], text[0] if text is not None else None, text is None, None,
                                 "<style" in html.lower() or "<link" in html.lower(), _reads([ast for _, ast in parts]))
    except TemplateError as exc:
        lineno = getattr(exc, "lineno", None)
        where = f" line {lineno}" if lineno else ""
        raise RenderError(f"template '{tmpl.name}'{where}: {exc.message or exc}") from None
    except CapExceeded as exc:
        raise RenderError(f"template '{tmpl.name}': {exc}") from None
    except (RecursionError, MemoryError, ValueError) as exc:  # nesting too deep, a 5,000-digit literal
        raise RenderError(f"template '{tmpl.name}': cannot be compiled: {type(exc).__name__}") from None
    with _COMPILED_LOCK:
        _COMPILED[key] = compiled
        if len(_COMPILED) > 256:
            _COMPILED.popitem(last=False)
    return compiled


# Reusing a render. Most marketing email differs between recipients only in a few values
# (the first name, the unsubscribe link). A template version whose parts read nothing but
# the names in `_REUSABLE` is rendered (Jinja, then CSS inlining) once per distinct set of
# the values it reads, with the unsubscribe link as a placeholder; each message then gets
# its own link put in, and goes on to link tracking and the MIME build like any other.
# Anything per message (a coupon, `now`, the `random` filter, the contact record, a trigger's data) or any use of
# the unsubscribe link other than printing it as is (`{{ unsubscribe_url }}`) renders every
# message in full. tests/rendering/test_render_reuse.py checks both ways give the same bytes.
_REUSABLE = frozenset({"first_name", "campaign", "lifecycle", "rfm_segment", "sender", "postal_address",
                       "request_text", "unsubscribe_url", "range", "dict", "namespace", "cycler", "joiner"})
_UNSUBSCRIBE = "unsubscribe_url"
# Marks for what differs per message, in kept renders and encoded parts: "<random><n>z",
# slot n (see `_plan_body`). Random per process: no template or contact can hold one.
_SLOT_MARK = "cmpslot" + secrets.token_hex(16)
_SLOT = re.compile(_SLOT_MARK + r"(\d+)z")
_UNSUB_SLOT, _OPEN_SLOT = 0, 1


def _mark(n: int) -> str:
    return f"{_SLOT_MARK}{n}z"


_PLACEHOLDER = _mark(_UNSUB_SLOT)  # the unsubscribe link in a kept render: printed as is, so the mark stands in for it
_PLAIN_URL = re.compile(r"[A-Za-z0-9:/._~-]+")  # printed as is by Jinja's escaping and by the inliner
Parts = tuple[str, str, str | None]  # subject, HTML, text (None: derived from the HTML)
V = TypeVar("V")


class _Kept(Generic[V]):
    """Renders kept for reuse, the least recently used dropped first: at most `count` of them
    and `chars` characters in all (a template may print a first name into a part of up to
    MAX_OUTPUT_CHARS; a few hundred of those must not pile up)."""

    def __init__(self, count: int = 256, chars: int = 8_000_000) -> None:
        self.count, self.chars, self.size = count, chars, 0
        self._kept: OrderedDict[tuple[Any, ...], tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> V | None:
        with self._lock:
            hit = self._kept.get(key)
            if hit is None:
                return None
            self._kept.move_to_end(key)
            return hit[0]

    def put(self, key: tuple[Any, ...], value: V, size: int | None = None) -> None:
        """Keep `value`; its `size` in characters (default: the sum of its parts' lengths)."""
        if size is None:
            size = sum(len(p) for p in cast(Parts, value) if p is not None)
        if size > self.chars:
            return
        with self._lock:
            old = self._kept.pop(key, None)
            self.size += size - (old[1] if old is not None else 0)
            self._kept[key] = (value, size)
            while len(self._kept) > self.count or self.size > self.chars:
                self.size -= self._kept.popitem(last=False)[1][1]


_REUSED: _Kept[Parts] = _Kept()


def _reads(parts: list[nodes.Template]) -> tuple[str, ...] | None:
    """The context names the parts read, or None when a render must not be reused."""
    names: set[str] = set()
    for ast in parts:
        names |= meta.find_undeclared_variables(ast)
        uses = sum(1 for n in ast.find_all(nodes.Name) if n.name == _UNSUBSCRIBE)
        printed = sum(1 for out in ast.find_all(nodes.Output) for n in out.nodes
                      if isinstance(n, nodes.Name) and n.name == _UNSUBSCRIBE)
        if uses != printed:  # filtered, tested, sliced, assigned: the placeholder would not stand in for it
            return None
        if any(f.name == "random" for f in ast.find_all(nodes.Filter)):  # a new pick for each message
            return None
    return tuple(sorted(names - {_UNSUBSCRIBE})) if names <= _REUSABLE else None


def _frozen(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    return value


def _reuse_key(template: MessageTemplate, compiled: _Compiled, ctx: dict[str, Any]) -> tuple[Any, ...] | None:
    """The key of this message's render among reusable ones, or None to render it in full."""
    if compiled.reads is None or not _PLAIN_URL.fullmatch(ctx[_UNSUBSCRIBE]):
        return None
    try:
        key = (template.name, template.version_hash, compiled.derived_per_message, *(_frozen(ctx[n]) if n in ctx else n for n in compiled.reads))
        hash(key)
    except TypeError:  # a value that cannot be a key: render in full
        return None
    return key


def _render_email_parts(template: MessageTemplate, compiled: _Compiled, ctx: dict[str, Any],
                        began: float) -> Parts:
    """Subject, HTML with its CSS inlined, and the text part (None: derived from the HTML)."""
    assert compiled.subject is not None and compiled.html is not None
    # Only the ends are trimmed: a line break inside (from contact data) must be refused, not hidden.
    subject = _run(template, "subject", compiled.subject, ctx, began).strip()
    doc = _run(template, "html", compiled.html, ctx, began)
    if compiled.has_css:
        try:
            check_html_nesting(doc)  # the inliner's parser crashes the process on very deep nesting
            doc = _INLINER.inline(doc)
        except CapExceeded as exc:
            raise RenderError(f"template '{template.name}' (html): {exc}") from None
        except ValueError as exc:
            raise RenderError(f"template '{template.name}': CSS could not be inlined: {exc}") from None
    text = _run(template, "text", compiled.text, ctx, began) if compiled.text is not None else None
    return subject, doc, text


def _email_parts(template: MessageTemplate, compiled: _Compiled, ctx: dict[str, Any],
                 began: float) -> tuple[tuple[str, str, str], tuple[Any, ...] | None]:
    """`_render_email_parts`, reused where the template allows (see `_REUSABLE`), with the
    unsubscribe link as the placeholder in the HTML and the text; and the reuse key (None: not
    reusable)."""
    url = ctx[_UNSUBSCRIBE]
    key = _reuse_key(template, compiled, ctx)
    if key is None:
        subject, doc, text = _render_email_parts(template, compiled, ctx, began)
        if text is None:
            text = html_text(doc)
        return (subject, doc.replace(url, _PLACEHOLDER), text.replace(url, _PLACEHOLDER)), None
    parts = _REUSED.get(key)
    if parts is None:
        parts = _render_email_parts(template, compiled, {**ctx, _UNSUBSCRIBE: _PLACEHOLDER}, began)
        _REUSED.put(key, parts)
    for name, part in (("html", parts[1]), ("text", parts[2])):  # the link may be longer than its placeholder
        try:
            check_output(len(part or "") + (part or "").count(_PLACEHOLDER) * (len(url) - len(_PLACEHOLDER)))
        except CapExceeded as exc:
            raise RenderError(f"template '{template.name}' ({name}): {exc}") from None
    subject, doc, text = parts
    if text is None:  # derived from each message's HTML, as it reads (the link in place)
        text = html_text(doc.replace(_PLACEHOLDER, url)).replace(url, _PLACEHOLDER)
        key = None
    return (subject, doc, text), key


# The HTML and text parts are encoded once per kept render, with slots for what each
# message has of its own: the unsubscribe link (slot 0), the open pixel's URL (slot 1) and
# each tracked link (2 on, in the order met); each message then only puts its values in
# (email_build.qp_plan). A render that is not kept is planned and filled at once, so both
# ways give the same bytes.
@dataclass(frozen=True)
class _Body:
    """A render's HTML and text encoded with slots; `links[n - 2]` is slot n's destination
    (the unsubscribe link's mark still in it, if the template put it there) and whether it
    stands in the HTML (escaped) or in the text."""

    html: email_build.QpPlan
    text: email_build.QpPlan
    links: tuple[tuple[str, bool], ...]


_BODIES: _Kept[_Body] = _Kept()


class _Recording(LinkRewriter):
    """A LinkRewriter that puts a slot's mark where each tracked link goes, and notes its destination."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.links: list[tuple[str, bool]] = []
        self.in_html = True

    def track(self, url: str) -> str:
        if not self.tracks(url):
            return url
        self.links.append((url, self.in_html))
        return _mark(len(self.links) + 1)


def _plan_body(doc: str, text: str, base: str) -> _Body:
    """What `render_delivery` does to a render's parts per message (links tracked, the open
    pixel added, contact-data marks removed), done once with marks in place of the values."""
    recording = _Recording(base)  # the unsubscribe link is already its mark (`_PLACEHOLDER`)
    doc = _pixel(recording.html(doc), _mark(_OPEN_SLOT)).replace(_DATA_MARK, "")
    recording.in_html = False
    text = recording.text(text).replace(_DATA_MARK, "")
    return _Body(email_build.qp_plan(doc, _SLOT), email_build.qp_plan(text, _SLOT), tuple(recording.links))


def _fill_body(body: _Body, linker: LinkRewriter, unsub: str, open_url: str) -> tuple[bytes, bytes]:
    """The HTML and text parts' bytes for one message."""
    values = [email_build.qp_value(unsub), email_build.qp_value(htmllib.escape(open_url))]
    for dest, in_html in body.links:
        new = linker.track(dest.replace(_PLACEHOLDER, unsub) if _PLACEHOLDER in dest else dest)
        values.append(email_build.qp_value(htmllib.escape(new) if in_html else new))
    return body.html.fill(values), body.text.fill(values)


class Recipient(Protocol):
    """What rendering reads of a contact: a `Contact`, or the sender's lighter `ContactRow`
    (scheduler/render_stage.py) with the same fields."""

    @property
    def id(self) -> int: ...
    @property
    def external_id(self) -> str | None: ...
    @property
    def email(self) -> str | None: ...
    @property
    def phone(self) -> str | None: ...
    @property
    def name(self) -> str | None: ...
    @property
    def first_name(self) -> str: ...
    @property
    def timezone(self) -> str | None: ...
    @property
    def locale(self) -> str | None: ...
    @property
    def attributes(self) -> dict[str, Any]: ...
    @property
    def tags(self) -> list[Any]: ...


def contact_context(contact: Recipient) -> dict[str, Any]:
    """The contact as plain data (templates never see ORM objects); URLs in it are marked
    so they print as text and are never rewritten to tracked links."""
    return _mark_data({
        "id": contact.id, "external_id": contact.external_id, "email": contact.email,
        "phone": contact.phone, "name": contact.name or "", "first_name": contact.first_name,
        "timezone": contact.timezone, "locale": contact.locale,
        "attributes": dict(contact.attributes or {}), "tags": list(contact.tags or []),
    })


def build_context(
    session: Session, settings: Settings, *, contact: Recipient, delivery_id: int,
    campaign: Campaign | None, lifecycle: str | None, rfm_segment: str | None,
    trigger: dict[str, Any] | None = None, reads: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Everything a template may use; `coupon(POOL)` takes a code only for a real delivery.

    `trigger` is what a triggered step's occurrence carries ({"purchase": {...}}, {"event": {...}},
    {"date": {...}}; see scheduler/triggers.py); only those keys are taken from it. `reads`:
    the names a reusable template reads (`_reads`); the contact record is then left out
    unless it is one of them (building it was a tenth of a reused render's time)."""
    taken: dict[str, str] = {}  # one code per pool per message, however often the template asks

    def coupon(pool: str) -> str:
        pool = coupons.check_pool(str(pool))
        if pool not in taken:
            with _WATCHDOG.paused():
                taken[pool] = (coupons.peek_code(session, pool) if delivery_id == PREVIEW_DELIVERY_ID
                               else coupons.assign_code(session, pool, delivery_id))
        return taken[pool]

    person = contact_context(contact) if reads is None or "contact" in reads else None
    return {
        "contact": person, "first_name": person["first_name"] if person is not None else _mark_data(contact.first_name),
        "campaign": {"id": campaign.id, "name": campaign.name, "channel": campaign.channel,
                     "utm": dict(campaign.utm or {})} if campaign else
                    {"id": None, "name": "", "channel": None, "utm": {}},
        "lifecycle": lifecycle, "rfm_segment": rfm_segment,
        "unsubscribe_url": links.unsubscribe_url(settings, delivery_id),
        "sender": {"name": settings.sending.from_name, "address": settings.sending.from_address},
        "postal_address": settings.sending.postal_address,
        "now": utcnow(), "coupon": coupon,
        **(_request_context(session, settings, contact, campaign.channel)
           if campaign is not None and consent_requests.is_request_campaign(campaign) else {}),
        **{k: _mark_data(v) for k, v in (trigger or {}).items() if k in TRIGGER_VARIABLES},
    }


TRIGGER_VARIABLES = frozenset({"purchase", "event", "date"})


def _request_context(session: Session, settings: Settings, contact: Recipient, channel: str) -> dict[str, str]:
    """What a double opt-in request template may use: `confirm_url` (email) and `request_text` (SMS)."""
    pending = ledger.open_request(session, contact.id, channel, utcnow())
    url = links.confirm_url(settings, consent_requests.token_for(settings, pending.id)) if pending is not None else ""
    return {"confirm_url": url, "request_text": settings.consent.sms_request_text}


KNOWN_VARIABLES = frozenset({"contact", "first_name", "campaign", "lifecycle", "rfm_segment",
                             "unsubscribe_url", "sender", "now", "coupon", "confirm_url", "request_text",
                             "postal_address", "purchase", "event", "date"})
CONTACT_FIELDS = frozenset({"id", "external_id", "email", "phone", "name", "first_name", "timezone",
                            "locale", "attributes", "tags"})


def _pixel(doc: str, url: str) -> str:
    tag = f'<img src="{htmllib.escape(url)}" width="1" height="1" alt="" style="display:none">'
    ends = list(_BODY_END.finditer(doc))
    return doc[:ends[-1].start()] + tag + doc[ends[-1].start():] if ends else doc + tag


def _run(tmpl: MessageTemplate, part: str, template: JinjaTemplate, context: dict[str, Any],
         began: float) -> str:
    """Render one part with what is left of the message's time cap (its parts share it:
    each used to get the whole cap, so three looping parts took three times as long)."""
    try:
        return render_capped(template, context, began=began)
    except Exception as exc:  # a template's failure fails its delivery only
        line = template_line(exc)
        raise RenderError(f"template '{tmpl.name}' ({part}{f' line {line}' if line else ''}): "
                          f"{_reason(exc)}") from None


def _reason(exc: Exception) -> str:
    """What a report shows for a render that failed."""
    if isinstance(exc, UndefinedError):
        return f"{exc.message} (use |default(...) for fields some contacts lack)"
    if isinstance(exc, (CapExceeded, CampaignsError)):  # caps; an empty coupon pool, a bad pool name
        return str(exc)
    if isinstance(exc, TemplateError):  # sandbox violations are SecurityError, a TemplateError
        return f"refused: {exc.message or exc}"
    if isinstance(exc, (RecursionError, MemoryError)):
        return "too deep or too large; refused"
    if isinstance(exc, TypeError) and "no loader" in str(exc):
        return "include/import/extends are not supported; templates are self-contained"
    return f"{type(exc).__name__}: {exc}"


def render_delivery(
    session: Session, settings: Settings, template: MessageTemplate, *, contact: Recipient,
    delivery_id: int, campaign: Campaign | None = None, lifecycle: str | None = None,
    rfm_segment: str | None = None, dkim: bool = True, trigger: dict[str, Any] | None = None,
) -> RenderedEmail | RenderedSms:
    """Build one contact's message; RenderError (with a reason) when it cannot be built.

    `dkim=False`: leave DKIM signing to the caller (the dispatcher signs on threads beside
    its event loop; see scheduler/dkim_pool.py)."""
    began = time.thread_time()  # the message's render time cap counts from here (CPU of this thread)
    compiled = compile_template(template)
    ctx = build_context(session, settings, contact=contact, delivery_id=delivery_id, campaign=campaign,
                        lifecycle=lifecycle, rfm_segment=rfm_segment, trigger=trigger, reads=compiled.reads)
    linker = LinkRewriter(session, settings, delivery_id, ctx["campaign"]["utm"])
    if template.channel == "sms":
        return _sms(settings, template, compiled, ctx, linker, contact, campaign)
    if not contact.email:
        raise RenderError(f"contact #{contact.id} has no email address")
    (subject, doc, text), key = _email_parts(template, compiled, ctx, began)
    unsub = ctx[_UNSUBSCRIBE]
    try:
        body = _BODIES.get((*key, linker.base)) if key is not None else None
        if body is None:
            body = _plan_body(doc, text, linker.base)
            if key is not None:
                _BODIES.put((*key, linker.base), body, len(doc) + len(text))
        html_part, text_part = _fill_body(body, linker, unsub, links.open_url(settings, delivery_id))
    except InputError as exc:
        raise RenderError(f"template '{template.name}': {exc}") from None
    subject = subject.replace(_PLACEHOLDER, unsub).replace(_DATA_MARK, "")
    return _email(settings, template, contact, delivery_id, subject, html_part, text_part, dkim, campaign, unsub=unsub)


def list_id(campaign: Campaign | None, domain: str) -> str:
    """RFC 2919 List-Id of a campaign's mail (ASCII; lets people filter it): a campaign with a
    topic is on that topic's list, <topic.topics.domain>, the same for every campaign about it
    (the list one-click unsubscribe leaves); one without is its own list, <name-id.domain>."""
    if campaign is None:
        return f"<preview.{domain}>"
    if campaign.topic is not None:  # topic names are checked to be dot-atom text (audience/topics.py)
        return f"<{campaign.topic.name}.topics.{domain}>"
    return _own_list_id(campaign.name, campaign.id, domain)


@lru_cache(maxsize=256)
def _own_list_id(name: str, campaign_id: int, domain: str) -> str:
    label = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "campaign"
    return f"<{label}-{campaign_id}.{domain}>"


def _date_header() -> str:
    """The Date header's value for now, formatted once a second (every message of the second shares it)."""
    global _date_kept
    now = utcnow()
    second = int(now.timestamp())
    if _date_kept[0] != second:
        _date_kept = (second, format_datetime(now.replace(microsecond=0), usegmt=True))
    return _date_kept[1]


_date_kept: tuple[int, str] = (-1, "")


def _email(settings: Settings, template: MessageTemplate, contact: Recipient, delivery_id: int,
           subject: str, doc: bytes, text: bytes, dkim: bool = True, campaign: Campaign | None = None, *,
           unsub: str) -> RenderedEmail:
    s = settings.sending
    domain = s.from_address.rpartition("@")[2]
    message_id = links.message_id(settings, delivery_id, domain)
    token = "-".join(unsub.rsplit("/", 2)[-2:])
    mailto = f"mailto:unsubscribe@{s.return_path_domain or domain}?subject=unsubscribe-{token}"
    try:
        skel = email_build.skeleton(s.from_name, s.from_address, s.reply_to)
        address = email_build.check_address("To", contact.email or "")
        to = email_build.mailbox("To", contact.name or "", address)
        data = email_build.build_email(
            skel, to=to, subject=subject, date=_date_header(), message_id=message_id,
            list_unsubscribe=(unsub, mailto), html=doc, text=text,
            extra_headers=(("List-Id", list_id(campaign, s.return_path_domain or domain)),))
    except email_build.HeaderError as exc:
        raise RenderError(f"template '{template.name}': {exc}") from None
    dkim_signer = dkim_signing.signer(settings) if dkim else None
    if dkim_signer is not None:
        try:
            data = dkim_signer.sign(data)
        except dkim_signing.DkimSigningError as exc:
            raise RenderError(f"template '{template.name}': {exc}") from None
    return RenderedEmail(address, links.return_path(settings, delivery_id), data, message_id, subject)


def _sms(settings: Settings, template: MessageTemplate, compiled: _Compiled, ctx: dict[str, Any],
         linker: LinkRewriter, contact: Recipient, campaign: Campaign | None) -> RenderedSms:
    if not contact.phone:
        raise RenderError(f"contact #{contact.id} has no phone number")
    assert compiled.sms is not None
    body = sms_text.clean(_run(template, "sms", compiled.sms, ctx, time.thread_time())).strip()
    try:
        body = linker.text(body).replace(_DATA_MARK, "")
    except InputError as exc:
        raise RenderError(f"template '{template.name}': {exc}") from None
    if campaign is None or campaign.marketing:
        body = sms_text.with_opt_out(body, settings.sms.opt_out_text)
    if not body:
        raise RenderError(f"template '{template.name}': the SMS is empty for this contact")
    enc = sms_text.encoding_for(body)
    segments = sms_text.segment_count(body, enc)
    try:
        sms_text.check_segments(segments, settings.sms.max_segments)
    except sms_text.TooLong as exc:
        raise RenderError(f"template '{template.name}': {exc}") from None
    return RenderedSms(contact.phone, body, enc, segments)
