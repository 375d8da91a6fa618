"""Quoted-printable parts are encoded line by line with the encoded lines kept
(campaigns/messages/email_build.py): the bytes must be exactly what binascii gives for the
whole part at once, whatever the part holds, and decode back to it."""

from __future__ import annotations

import binascii
import quopri

from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from campaigns.messages import email_build


def _whole(text: str) -> bytes:
    """The encoding of the part in one call (what email_build did before it kept lines)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.endswith("\n"):
        text += "\n"
    return binascii.b2a_qp(text.encode("utf-8"), istext=True).replace(b"\n", b"\r\n")


# Blanks, '=', dots, line breaks of every kind, non-ASCII and runs long enough to need soft breaks.
_CHARS = st.sampled_from([" ", "\t", "=", ".", "a", "Z", "\n", "\r", "\r\n", "é", "·", "\u2028", "😀", "x" * 80, " \n"])
_TEXT = st.lists(_CHARS, max_size=60).map("".join)


@hsettings(max_examples=400, deadline=None)
@given(_TEXT)
def test_line_by_line_is_the_whole_part_encoded(text):
    assert email_build.qp(text) == _whole(text)
    assert email_build.qp(text) == _whole(text)  # again, from the kept lines
    decoded = quopri.decodestring(email_build.qp(text).replace(b"\r\n", b"\n")).decode("utf-8")
    assert decoded == _expected_text(text)


def _expected_text(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text if text.endswith("\n") else text + "\n"


def test_a_repeated_line_is_encoded_once_and_the_cache_is_bounded(monkeypatch):
    calls = []
    real = binascii.b2a_qp

    def counting(data, **kw):
        calls.append(data)
        return real(data, **kw)

    monkeypatch.setattr(email_build, "_QP", {})
    monkeypatch.setattr(email_build, "_QP_LINES", 50)
    monkeypatch.setattr(email_build.binascii, "b2a_qp", counting)
    line = "<td style=\"padding: 0 24px;\">the same line in every message</td>"
    for n in range(10):
        email_build.qp(f"{line}\nHello reader {n}\n{line}\n")
    assert calls.count(line.encode() + b"\n") == 1
    assert len(calls) == 11  # the shared line once, each greeting once
    for n in range(200):
        email_build.qp(f"distinct line {n}\n")
    assert len(email_build._QP) <= 50
