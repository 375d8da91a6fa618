"""Numbers past what the database stores are one line, not an internal error (issue 17's
"every refusal one line"): a 23-digit #id, a non-ASCII digit, a huge --limit or --offset."""

from __future__ import annotations

import pytest

HUGE = "99999999999999999999999"


@pytest.mark.parametrize("args", [
    ("contacts", "show", f"#{HUGE}"), ("contacts", "show", "#\u00b2"), ("contacts", "show", HUGE),
    ("events", f"#{HUGE}"), ("contacts", "list", "--offset", HUGE), ("contacts", "list", "--limit", HUGE),
    ("purchases", "list", "--limit", HUGE), ("suppress", "list", "--limit", HUGE),
    ("events", "ann@example.com", "--limit", HUGE), ("customers", "clv", "--top", HUGE),
])
def test_a_number_too_big_for_the_database_is_one_line(cli, args) -> None:
    assert cli("contacts", "add", "--email", "ann@example.com").exit_code in (0, 1, 2)
    r = cli(*args)
    assert r.exit_code in (1, 2), (args, r.output)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "internal error" not in lines[0], (args, r.stderr)
