"""Nested in_segment() expansion is capped (issue 17): 190 references to a segment of
190 references took minutes, then an internal error dumping megabytes of SQL."""

from __future__ import annotations

from campaigns.segments.compiler import MAX_EXPANDED_CONDITIONS


def test_a_nested_in_segment_bomb_is_one_line_naming_the_cap(cli) -> None:
    leaf = " or ".join(f'email = "a{i}@example.com"' for i in range(120))
    assert cli("segments", "create", "fa", "--where", leaf).exit_code == 0
    bomb = " or ".join(['in_segment("fa")'] * 120)
    r = cli("segments", "create", "fb", "--where", bomb)
    assert r.exit_code == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr[:2000]
    assert f"more than {MAX_EXPANDED_CONDITIONS:,} conditions" in lines[0] and "expansion cap" in lines[0]
    assert "SELECT" not in r.stderr


def test_ordinary_nesting_still_works(cli) -> None:
    assert cli("segments", "create", "fa", "--where", 'email = "a@example.com"').exit_code == 0
    assert cli("segments", "create", "fb", "--where", 'in_segment("fa") or in_segment("fa")').exit_code == 0
    assert cli("segments", "count", "fb").exit_code == 0
