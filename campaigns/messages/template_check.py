"""Deliverability checks of a rendered email: what `campaigns templates check` reports.

SpamAssassin's local tests (when Debian's `spamassassin` is installed), images against
text, images without alt text, and Gmail's clipping of HTML past 102 KB.
"""

from __future__ import annotations

import email
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from email import policy
from html.parser import HTMLParser

GMAIL_CLIP_BYTES = 102 * 1024  # Gmail shows "[Message clipped]" past this much HTML
SPAM_LIMIT = 2.0  # our bar for a shipped template (SpamAssassin's own default is 5.0)
MIN_WORDS_PER_IMAGE = 60  # below this, mail looks image-heavy to filters and to people


@dataclass
class CheckReport:
    """What one check found; `problems` are what fails the check."""

    html_bytes: int = 0
    words: int = 0
    images: int = 0
    missing_alt: list[str] = field(default_factory=list)
    spam_score: float | None = None
    spam_rules: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class _Scan(HTMLParser):
    """Counts visible words and content images (not 1x1 tracking pixels), and images without alt."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.words = 0
        self.images = 0
        self.missing_alt: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in ("style", "script", "title", "head"):
            self._skip += 1
        elif tag == "img" and not (a.get("width") == "1" and a.get("height") == "1"):
            self.images += 1
            if "alt" not in a:
                self.missing_alt.append(a.get("src") or "(no src)")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script", "title", "head") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.words += len(re.findall(r"\w+", data))


def spamassassin_score(raw: bytes) -> tuple[float, list[str]] | None:
    """(score, rules hit) from `spamassassin -L -t` (local tests), or None when it is not installed."""
    exe = shutil.which("spamassassin")
    if exe is None:
        return None
    done = subprocess.run([exe, "-L", "-t"], input=raw, capture_output=True, timeout=300, check=False)
    report = done.stdout.decode("utf-8", "replace")
    found = re.search(r"Content analysis details:\s+\((-?[\d.]+) points", report)
    if found is None:
        return None
    rules = [f"{m.group(2)} ({m.group(1)})" for m in re.finditer(r"^\s*(-?\d+\.\d+)\s+([A-Z0-9_]+)\s", report, re.M)
             if float(m.group(1)) != 0]
    return float(found.group(1)), rules


def check_message(raw: bytes, *, spam: bool = True) -> CheckReport:
    """Check one rendered message (RFC 5322 bytes)."""
    msg = email.message_from_bytes(raw, policy=policy.default)
    part = msg.get_body(("html",))
    html = part.get_content() if part is not None else ""
    report = CheckReport(html_bytes=len(html.encode("utf-8")))
    scan = _Scan()
    scan.feed(html)
    report.words, report.images, report.missing_alt = scan.words, scan.images, scan.missing_alt
    if report.html_bytes > GMAIL_CLIP_BYTES:
        report.problems.append(f"the HTML is {report.html_bytes / 1024:.0f} KB: Gmail clips it past 102 KB, "
                               "hiding the footer and its unsubscribe link")
    if report.missing_alt:
        report.problems.append(f"{len(report.missing_alt)} images have no alt text: {', '.join(report.missing_alt[:5])}")
    if report.images and report.words / report.images < MIN_WORDS_PER_IMAGE:
        report.problems.append(f"{report.words} words for {report.images} images: too little text "
                               f"(at least {MIN_WORDS_PER_IMAGE} words per image)")
    if spam:
        scored = spamassassin_score(raw)
        if scored is not None:
            report.spam_score, report.spam_rules = scored
            if report.spam_score >= SPAM_LIMIT:
                report.problems.append(f"SpamAssassin scores it {report.spam_score:.1f} (aim below {SPAM_LIMIT}): "
                                       + ", ".join(report.spam_rules))
    return report
