"""Message templates on disk: one folder per template, loaded, hashed, linted, registered.

The convention (templates/README.md): `<templates_dir>/<name>/` holds either
`subject.txt` + `body.html` (+ optional `body.txt`) for an email, or `sms.txt` for an
SMS. Folders starting with `_` or `.` are not templates. The version hash covers every
file of the template, so the `template` row pins exactly what was sent.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from jinja2 import TemplateSyntaxError, meta, nodes
from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.config import Settings
from campaigns.errors import InputError, NotFoundError
from campaigns.models import Template
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
    if path.stat().st_size > MAX_FILE_BYTES:
        raise InputError(f"{path}: larger than {MAX_FILE_BYTES // 1024} KB; templates must be small")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text; save the file as UTF-8") from None


def _hash(channel: str, parts: dict[str, str]) -> str:
    digest = hashlib.sha256(channel.encode())
    for fname in sorted(parts):
        digest.update(b"\x00" + fname.encode() + b"\x00" + parts[fname].encode())
    return digest.hexdigest()


def load_template(settings: Settings, name: str) -> MessageTemplate:
    """Read one template from its folder; NotFoundError/InputError say what is missing."""
    if not NAME.match(name or ""):
        raise InputError(f"template name '{name}': use lower-case letters, digits, '_' or '-'")
    folder = templates_root(settings) / name
    if not folder.is_dir():
        raise NotFoundError(f"template '{name}' not found: expected a folder {folder}")
    files = {f: folder / f for f in (*EMAIL_FILES, SMS_FILE) if (folder / f).is_file()}
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
    return lint_sources(tmpl)


def lint_sources(tmpl: MessageTemplate) -> list[LintIssue]:
    """Lint a loaded template's sources (no database needed)."""
    # rendering owns the environments and the context; imported here to avoid a cycle
    from campaigns.rendering import CONTACT_FIELDS, HTML_ENV, KNOWN_VARIABLES, TEXT_ENV

    issues: list[LintIssue] = []
    parts = ({"sms.txt": (TEXT_ENV, tmpl.sms_body or "")} if tmpl.channel == "sms" else
             {"subject.txt": (TEXT_ENV, tmpl.subject or ""), "body.html": (HTML_ENV, tmpl.html or ""),
              **({"body.txt": (TEXT_ENV, tmpl.text)} if tmpl.text is not None else {})})
    used: dict[str, set[str]] = {}
    for fname, (env, source) in parts.items():
        try:
            ast = env.parse(source)
        except TemplateSyntaxError as exc:
            issues.append(LintIssue("error", f"{fname} line {exc.lineno}: {exc.message}"))
            continue
        names = meta.find_undeclared_variables(ast)
        used[fname] = names
        for unknown in sorted(names - KNOWN_VARIABLES):
            issues.append(LintIssue("error", f"{fname}: '{unknown}' is not in the context "
                                    f"(available: {', '.join(sorted(KNOWN_VARIABLES))})"))
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
