"""Characters that change how text looks without being seen: bidi overrides and
zero-width characters. A contact name with U+202E shows `exe.gpj` as `jpg.exe`; they are
stripped from message headers (Subject, display names) and SMS text."""

from __future__ import annotations

import re

# U+202A-U+202E embeddings and overrides, U+2066-U+2069 isolates, U+200B-U+200D zero-width
# space / non-joiner / joiner, U+2060 word joiner, U+FEFF zero-width no-break space.
INVISIBLE = re.compile("[\u202a-\u202e\u2066-\u2069\u200b-\u200d\u2060\ufeff]")


def strip_invisible(text: str) -> str:
    """`text` without bidi overrides, isolates and zero-width characters."""
    return text if text.isascii() else INVISIBLE.sub("", text)  # every one of them is outside ASCII
