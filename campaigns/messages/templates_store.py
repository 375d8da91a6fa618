"""Message templates on disk: one folder per template, loaded, hashed, linted, registered.

The convention (templates/README.md): `<templates_dir>/<name>/` holds either
`subject.txt` + `body.html` (+ optional `body.txt`) for an email, or `sms.txt` for an
SMS. Folders starting with `_` or `.` are not templates. The version hash covers every
file of the template, so the `template` row pins exactly what was sent.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from jinja2 import TemplateSyntaxError, meta, nodes
from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.config import Settings
from campaigns.errors import InputError, NotFoundError
from campaigns.store.models import Template
from campaigns.timespec import utcnow

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
EMAIL_FILES = ("subject.txt", "body.html", "body.txt")
SMS_FILE = "sms.txt"
MAX_FILE_BYTES = 512 * 1024  # a template bigger than this is a mistake, not a message


@dataclass(frozen=True)
class MessageTemplate:
    """One template's sources. `text` is None when the text part is derived from the HTML."""

    name: str
    channel: Literal["email", "sms"]
    subject: str | None
    html: str | None
    text: str | None
    sms_body: str | None
    version_hash: str
    path: Path


@dataclass(frozen=True)
class LintIssue:
    """One finding of `lint_template`."""

    level: Literal["error", "warning"]
    message: str


def templates_root(settings: Settings) -> Path:
    """The configured templates folder."""
    return settings.path(settings.templates_dir)


def _read(path: Path) -> str:
    """A template file's text; it must be a regular file (a symlink is never followed)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError(f"{path}: is a symlink; template files must be regular files inside the "
                             "templates folder") from None
        raise InputError(f"{path}: cannot be read: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"{path}: not a regular file; template files must be regular files")
        if info.st_size > MAX_FILE_BYTES:
            raise InputError(f"{path}: larger than {MAX_FILE_BYTES // 1024} KB; templates must be small")
        data = fh.read(MAX_FILE_BYTES + 1)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text; save the file as UTF-8") from None


def _folder(settings: Settings, name: str) -> Path:
    """The template's folder: a real folder directly inside the templates folder."""
    root = templates_root(settings)
    folder = root / name
    if folder.is_symlink():
        raise InputError(f"template '{name}': {folder} is a symlink; templates must be folders inside {root}")
    if not folder.is_dir():
        raise NotFoundError(f"template '{name}' not found: expected a folder {folder}")
    return folder


def _hash(channel: str, parts: dict[str, str]) -> str:
    digest = hashlib.sha256(channel.encode())
    for fname in sorted(parts):
        digest.update(b"\x00" + fname.encode() + b"\x00" + parts[fname].encode())
    return digest.hexdigest()


def load_template(settings: Settings, name: str) -> MessageTemplate:
    """Read one template from its folder; NotFoundError/InputError say what is missing."""
    if not NAME.match(name or ""):
        raise InputError(f"template name '{name}': use lower-case letters, digits, '_' or '-'")
    folder = _folder(settings, name)
    files = {f: folder / f for f in (*EMAIL_FILES, SMS_FILE) if os.path.lexists(folder / f)}
    if SMS_FILE in files and ("body.html" in files or "subject.txt" in files):
        raise InputError(f"template '{name}': has both sms.txt and email files; keep one channel per folder")
    parts = {f: _read(p) for f, p in files.items()}
    if SMS_FILE in parts:
        return MessageTemplate(name, "sms", None, None, None, parts[SMS_FILE], _hash("sms", parts), folder)
    missing = [f for f in ("subject.txt", "body.html") if f not in parts]
    if missing:
        raise InputError(f"template '{name}': missing {' and '.join(missing)} in {folder} "
                         "(an email needs subject.txt and body.html; an SMS needs sms.txt)")
    subject = parts["subject.txt"].strip()
    return MessageTemplate(name, "email", subject, parts["body.html"], parts.get("body.txt"), None,
                           _hash("email", parts), folder)


def list_templates(settings: Settings) -> list[MessageTemplate]:
    """Every valid template in the folder, by name (broken ones are left to `lint`)."""
    root = templates_root(settings)
    if not root.is_dir():
        return []
    out = []
    for folder in sorted(root.iterdir()):
        if folder.is_dir() and NAME.match(folder.name):
            try:
                out.append(load_template(settings, folder.name))
            except (InputError, NotFoundError):
                continue
    return out


def template_names(settings: Settings) -> list[str]:
    """Names of every template-looking folder, valid or not."""
    root = templates_root(settings)
    return sorted(p.name for p in root.iterdir() if p.is_dir() and NAME.match(p.name)) if root.is_dir() else []


def lint_template(settings: Settings, name: str) -> list[LintIssue]:
    """Syntax errors, variables the context will not have, a marketing email without unsubscribe link."""
    try:
        tmpl = load_template(settings, name)
    except (InputError, NotFoundError) as exc:
        return [LintIssue("error", str(exc))]
    return lint_sources(tmpl, settings.sms.max_segments)


def lint_sources(tmpl: MessageTemplate, max_sms_segments: int = 6) -> list[LintIssue]:
    """Lint a loaded template's sources (no database needed)."""
    # rendering owns the environments and the context; imported here to avoid a cycle
    from campaigns.messages.rendering import CONTACT_FIELDS, HTML_ENV, KNOWN_VARIABLES, TEXT_ENV
    from campaigns.messages.sandbox import CapExceeded, parse_checked

    issues: list[LintIssue] = []
    parts = ({"sms.txt": (TEXT_ENV, tmpl.sms_body or "")} if tmpl.channel == "sms" else
             {"subject.txt": (TEXT_ENV, tmpl.subject or ""), "body.html": (HTML_ENV, tmpl.html or ""),
              **({"body.txt": (TEXT_ENV, tmpl.text)} if tmpl.text is not None else {})})
    used: dict[str, set[str]] = {}
    began = time.thread_time()  # the parts' trial renders share one time cap, as in a send
    for fname, (env, source) in parts.items():
        try:
            ast = parse_checked(env, source)
            names = meta.find_undeclared_variables(ast)  # compiles: an unknown filter is refused here
        except TemplateSyntaxError as exc:  # TemplateAssertionError (unknown filter) included
            issues.append(LintIssue("error", f"{fname} line {exc.lineno}: {exc.message}"))
            continue
        except CapExceeded as exc:
            issues.append(LintIssue("error", f"{fname}: {exc}"))
            continue
        except RecursionError:
            issues.append(LintIssue("error", f"{fname}: nested too deeply to compile; refused"))
            continue
        used[fname] = names
        issues.extend(_data_in_link_host(fname, source))
        for unknown in sorted(names - KNOWN_VARIABLES):
            issues.append(LintIssue("error", f"{fname}: '{unknown}' is not in the context "
                                    f"(available: {', '.join(sorted(KNOWN_VARIABLES))})"))
        refused = _refused_statically(fname, ast)
        trial, sample = ([], None) if refused else _trial_render(fname, env, ast, began)
        issues.extend(refused or trial)
        if fname == SMS_FILE and sample is not None:
            issues.extend(_sms_length(sample, max_sms_segments))
        for node in ast.find_all(nodes.Getattr):
            if isinstance(node.node, nodes.Name) and node.node.name == "contact" and node.attr not in CONTACT_FIELDS:
                issues.append(LintIssue("error", f"{fname} line {node.lineno}: contact.{node.attr} is not a "
                                        f"contact field; custom fields are contact.attributes.{node.attr}"))
        for node in ast.find_all(nodes.Getattr):
            if (isinstance(node.node, nodes.Getattr) and node.node.attr == "attributes"
                    and isinstance(node.node.node, nodes.Name) and node.node.node.name == "contact"
                    and not _has_default(ast, node)):
                issues.append(LintIssue("warning", f"{fname} line {node.lineno}: contacts without the "
                                        f"'{node.attr}' attribute will fail; add |default(...)"))
    if tmpl.channel == "email" and "body.html" in used and "unsubscribe_url" not in used["body.html"]:
        issues.append(LintIssue("error", "body.html: no unsubscribe link; marketing email must link "
                                "{{ unsubscribe_url }}"))
    if "body.txt" in used and "unsubscribe_url" not in used["body.txt"]:
        issues.append(LintIssue("warning", "body.txt: no {{ unsubscribe_url }} in the text part"))
    if tmpl.channel == "email" and "\n" in (tmpl.subject or ""):
        issues.append(LintIssue("error", "subject.txt: the subject must be one line"))
    return issues


# A link whose host runs into a template expression: "https://shop.example.com{{ x }}" or
# "https://{{ x }}". Data there can change where the link goes ("@evil.example/login" makes
# evil.example the host), and a tracked link redirects wherever the rendered URL points.
_HOST_FROM_DATA = re.compile(r"https?://[^/?#\s\"'<>{}]*\{[{%]", re.IGNORECASE)


def _data_in_link_host(fname: str, source: str) -> list[LintIssue]:
    """An error for each link whose host is built from template data (only what the author
    wrote may decide where a tracked link redirects; data after the host's '/' is fine)."""
    return [LintIssue("error", f"{fname} line {source.count(chr(10), 0, m.start()) + 1}: a link's host is built from "
                      f"template data ({m.group(0)[:60]}...); write the host and a '/' literally, then the data")
            for m in _HOST_FROM_DATA.finditer(source)]


def _refused_statically(fname: str, ast: nodes.Template) -> list[LintIssue]:
    """What every send refuses whatever the data: other files, and names the sandbox hides."""
    issues = [LintIssue("error", f"{fname} line {n.lineno}: include/import/extends are not supported; "
                        "templates are self-contained")
              for n in ast.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends))]
    hidden: list[tuple[int, str]] = [(n.lineno, n.attr) for n in ast.find_all(nodes.Getattr)]
    hidden += [(n.lineno, n.arg.value) for n in ast.find_all(nodes.Getitem)
               if isinstance(n.arg, nodes.Const) and isinstance(n.arg.value, str)]
    hidden += [(n.lineno, n.args[0].value) for n in ast.find_all(nodes.Filter)
               if n.name == "attr" and n.args and isinstance(n.args[0], nodes.Const)
               and isinstance(n.args[0].value, str)]
    issues += [LintIssue("error", f"{fname} line {line}: '{attr[:40]}' is refused by the sandbox "
                         "(names starting with '_' are internal)")
               for line, attr in sorted(hidden) if attr.startswith("_")]
    return issues


class _AnyAttributes(dict[str, Any]):
    """A sample contact's attributes: every attribute a template asks for exists."""

    def __missing__(self, key: str) -> str:
        return "sample"


def _sms_length(sample: str, max_segments: int) -> list[LintIssue]:
    """A warning when the SMS, rendered with sample data, is over [sms] max_segments."""
    from campaigns.messages import sms_text

    body = sms_text.clean(sample).strip()
    segments = sms_text.segment_count(body)
    if segments <= max_segments:
        return []
    return [LintIssue("warning", f"sms.txt: {segments} segments with sample data, over [sms] max_segments = "
                      f"{max_segments}; such sends fail")]


def _trial_render(fname: str, env: Any, ast: nodes.Template, began: float) -> tuple[list[LintIssue], str | None]:
    """Render once with sample data: a cap or sandbox refusal that does not depend on the
    contact is what every send would hit. Failures that come from the sample data itself
    (a missing field, a type mismatch) are not reported here. Returns the findings and
    the sample output (None when the render failed)."""
    from jinja2.exceptions import SecurityError, TemplateRuntimeError, UndefinedError

    from campaigns.messages.sandbox import (
        CapExceeded,
        check_html_nesting,
        render_capped,
        template_line,
        time_left,
    )

    person = {"id": 1, "external_id": "sample", "email": "sample@example.com", "phone": "+14155550100",
              "name": "Sample Person", "first_name": "Sample", "timezone": "UTC", "locale": "en",
              "attributes": _AnyAttributes(), "tags": []}
    context = {"contact": person, "first_name": "Sample", "lifecycle": "active", "rfm_segment": "champions",
               "campaign": {"id": 1, "name": "sample", "channel": "email", "utm": {}},
               "unsubscribe_url": "https://example.com/u/sample", "now": utcnow(),
               "sender": {"name": "Sender", "address": "sender@example.com"}, "coupon": lambda pool: "SAMPLE-CODE"}
    if time_left(began) <= 0:  # an earlier part used the message's time: it is the one reported
        return [], None
    try:
        sample = render_capped(env.from_string(ast), context, began=began)
        if fname == "body.html":
            check_html_nesting(sample)
        return [], sample
    except UndefinedError:  # a field the sample contact lacks: depends on the data
        return [], None
    except (CapExceeded, SecurityError, RecursionError, MemoryError, TemplateRuntimeError, OverflowError) as exc:
        # caps, the sandbox, an unknown test, range() past the sandbox's 100,000, a number out
        # of range: the sample data is small and plain, so every send hits these too
        line = template_line(exc)
        reason = str(exc) if isinstance(exc, CapExceeded) else f"refused: {exc or type(exc).__name__}"
        return [LintIssue("error", f"{fname}{f' line {line}' if line else ''}: {reason}")], None
    except Exception:  # a failure that depends on the sample data
        return [], None


def _has_default(ast: nodes.Template, target: nodes.Node) -> bool:
    """True when `target` is wrapped in a |default filter (or tested with `is defined`)."""
    for f in ast.find_all(nodes.Filter):
        if f.name in ("default", "d") and f.node is target:
            return True
    return any(_same(t.node, target) for t in ast.find_all(nodes.Test) if t.name in ("defined", "undefined"))


def _same(a: nodes.Node, b: nodes.Node) -> bool:
    """Two Getattr chains naming the same path (contact.attributes.x)."""
    while isinstance(a, nodes.Getattr) and isinstance(b, nodes.Getattr) and a.attr == b.attr:
        a, b = a.node, b.node
    return isinstance(a, nodes.Name) and isinstance(b, nodes.Name) and a.name == b.name


def sync_template(session: Session, tmpl: MessageTemplate) -> Template:
    """Upsert the `template` row by name; it changes only when the version hash does."""
    row = session.scalars(select(Template).where(Template.name == tmpl.name)).one_or_none()
    if row is None:
        row = Template(name=tmpl.name, channel=tmpl.channel, version_hash="")
        session.add(row)
    if row.version_hash != tmpl.version_hash or row.channel != tmpl.channel:
        row.channel = tmpl.channel
        row.subject = tmpl.subject
        row.body_html = tmpl.html
        row.body_text = tmpl.text if tmpl.channel == "email" else tmpl.sms_body
        row.source_path = str(tmpl.path)
        row.version_hash = tmpl.version_hash
        row.updated_at = utcnow()
    session.flush()
    return row


def shipped_templates() -> Path:
    """The example templates that ship with the product: inside the wheel, or the repository's
    templates/ folder in a checkout (the demo copies them all, double opt-in its request ones)."""
    import campaigns

    inside = Path(campaigns.__file__).parent / "shipped_templates"
    return inside if inside.is_dir() else Path(campaigns.__file__).resolve().parent.parent / "templates"
