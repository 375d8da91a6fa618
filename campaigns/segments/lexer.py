"""The filter language's lexer: text -> tokens, each with its 1-based column.

Comments, `;` and unknown characters are errors at their column; strings may not hold
control characters (PostgreSQL refuses NUL, and nobody means them in a filter).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from campaigns.errors import InputError

MAX_LENGTH = 4000  # a filter longer than this is a mistake, not a segment

KEYWORDS = {"and", "or", "not", "in", "contains", "between", "ago", "true", "false", "null"}

_TOKEN = re.compile(r"""
    (?P<ws>[ \t\r\n]+)
  | (?P<date>\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?)?(?![\w.]))
  | (?P<duration>\d+[smhdw](?![\w.]))
  | (?P<number>-?\d+(?:\.\d+)?(?![\w]))
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>!=|<=|>=|=|<|>)
  | (?P<punct>[()\[\],.])
""", re.VERBOSE)
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'"}


@dataclass(frozen=True)
class Token:
    kind: str  # date | duration | number | string | ident | op | punct | end
    text: str
    col: int  # 1-based


_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


def error(col: int, message: str) -> InputError:
    """An InputError pointing at a column of the filter, on one line: control characters
    quoted from the filter are shown escaped (a newline as \\n)."""
    return InputError(f"column {col}: " + _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode(), message))


def tokenize(text: str) -> list[Token]:
    """Split a filter into tokens; an unknown character is an error at its column."""
    if len(text) > MAX_LENGTH:
        raise InputError(f"filter is {len(text)} characters long; the limit is {MAX_LENGTH}")
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            ch = text[pos]
            if text.startswith(("--", "/*"), pos) or ch == ";":
                raise error(pos + 1, f"unexpected '{ch}' (comments and ';' are not part of the filter language)")
            if ch in "\"'":
                raise error(pos + 1, "this string has no closing quote")
            raise error(pos + 1, f"unexpected character {ch!r}")
        kind = m.lastgroup or ""
        if kind != "ws":
            tokens.append(Token(kind, m.group(), pos + 1))
        pos = m.end()
    tokens.append(Token("end", "", len(text) + 1))
    return tokens


def unquote(tok: Token) -> str:
    """The text of a string token, escapes resolved; control characters are refused."""
    body = tok.text[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            nxt = body[i + 1]
            if nxt not in _ESCAPES:
                raise error(tok.col + i + 1, f"unknown escape '\\{nxt}' in a string")
            out.append(_ESCAPES[nxt])
            i += 2
            continue
        if (ord(ch) < 32 and ch not in "\t\n") or ch == "\x7f":
            raise error(tok.col + i + 1, "strings cannot contain control characters")
        out.append(ch)
        i += 1
    return "".join(out)
