"""Quoted-printable parts are encoded line by line with the encoded lines kept
(campaigns/messages/email_build.py): the bytes must be exactly what binascii gives for the
whole part at once, whatever the part holds, and decode back to it."""

from __future__ import annotations

import binascii
import quopri
import re

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


# Parts encoded once with slots (email_build.qp_plan), filled per message (QpPlan.fill):
# what decodes must be the part with the values in place, every line within 76 characters
# and nothing but quoted-printable's own characters, whatever the text, the values and
# where the slots fall (line starts and ends, next to blanks, after a long run).
_SLOT = re.compile(r"\x01(\d)\x01")
_VALUES = st.sampled_from(["https://t.example/c/abc", "https://t.example/c/a?x=1&y==2", "", "=", "u" * 74, "v" * 75,
                           "w" * 76, "x=" * 60, "https://t.example/" + "=" * 40, "é ü", " lead and trail ", "a\tb"])


@hsettings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(_CHARS, st.sampled_from(["\x010\x01", "\x011\x01", "\x012\x01"])), max_size=60).map("".join),
       st.lists(_VALUES, min_size=3, max_size=3))
def test_a_part_planned_with_slots_decodes_to_the_part_with_the_values_in(text, values):
    plan = email_build.qp_plan(text, _SLOT)
    out = plan.fill([email_build.qp_value(v) for v in values])
    assert _legal(out)
    decoded = quopri.decodestring(out.replace(b"\r\n", b"\n")).decode("utf-8")
    # (the values hold no line breaks: the part's line ends are the text's, values put in after)
    assert decoded == _SLOT.sub(lambda m: values[int(m.group(1))], _expected_text(text))


def _legal(encoded: bytes) -> bool:
    """Quoted-printable output: CRLF line ends, lines of at most 76 characters, printable
    ASCII (and inner blanks) only, every '=' an escape or a soft line break."""
    assert encoded.endswith(b"\r\n")
    for line in encoded[:-2].split(b"\r\n"):
        assert len(line) <= 76, line
        assert re.fullmatch(rb"[\x20-\x7e\t]*", line), line
        assert not line.endswith((b" ", b"\t")), line  # a blank at a line's end is escaped
        assert re.fullmatch(rb"(?:[^=]|=[0-9A-F]{2})*=?", line), line
    return True


def test_a_planned_part_keeps_its_lines_and_fills_only_the_slots():
    text = "<p>the same line in every message</p>\n<a href=\"\x010\x01\">shop</a> today\n"
    plan = email_build.qp_plan(text, _SLOT)
    assert [p for p in plan.pieces if isinstance(p, int)] == [0]
    one = plan.fill([email_build.qp_value("https://t.example/c/1")])
    two = plan.fill([email_build.qp_value("https://t.example/c/22")])
    assert one != two and one.startswith(b"<p>the same line in every message</p>\r\n<a href=3D\"=\r\n")
