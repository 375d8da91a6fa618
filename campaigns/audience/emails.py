"""Email address validation as email_validator decides it, with each domain checked once.

email_validator spends most of its time on the domain (IDNA and label rules), which an
import repeats for every address at the same few domains. An address whose part before
the @ is a plain ASCII dot-atom and whose domain is plain ASCII host characters is split
here, its domain checked once per import (cached), and its length checked as the library
does; any other address, and every failure (for its exact message), goes through the
library whole. The result is the library's normalised form, lower-cased.
"""

from __future__ import annotations

import re

from email_validator import EmailNotValidError, validate_email

from campaigns.errors import InputError

# email_validator's rfc_constants.DOT_ATOM_TEXT (ASCII atext), and plain host characters.
_LOCAL = re.compile(r"[a-zA-Z0-9_!#$%&'*+\-/=?^`{|}~]+(?:\.[a-zA-Z0-9_!#$%&'*+\-/=?^`{|}~]+)*\Z")
_HOST = re.compile(r"[A-Za-z0-9.\-]+\Z")
MAX_LENGTH = 254  # RFC 3696 errata, as email_validator checks it
_DOMAINS: dict[str, str | None] = {}  # given domain -> normalised, or None when the library refuses it


def normalise_email(value: str) -> str:
    """A syntactically valid address (no DNS look-up), lower-cased."""
    text = value.strip()
    local, at, domain = text.rpartition("@")
    if at and _LOCAL.match(local) and _HOST.match(domain):
        normal = _domain(domain)
        if normal is not None and len(local) + 1 + max(len(domain), len(normal)) <= MAX_LENGTH:
            return f"{local}@{normal}".lower()
    return _whole(value, text)


def _domain(domain: str) -> str | None:
    if domain not in _DOMAINS:
        if len(_DOMAINS) > 65536:  # bounded: a long-running daemon imports too
            _DOMAINS.clear()
        try:
            found = validate_email(f"a@{domain}", check_deliverability=False)
            _DOMAINS[domain] = found.domain if found.domain == found.ascii_domain else None  # IDN: the whole path
        except EmailNotValidError:
            _DOMAINS[domain] = None
    return _DOMAINS[domain]


def _whole(value: str, text: str) -> str:
    try:
        return validate_email(text, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise InputError(f"'{value}' is not a valid email address: {exc}") from None
