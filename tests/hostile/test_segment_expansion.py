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


def test_a_wide_expansion_under_the_cap_runs_on_every_database(cli) -> None:
    """9,600 conditions is under the cap; SQLite parsed `a OR b OR ...` 9,600 deep and refused
    past 1,000 ("Expression tree is too large"), an internal error. Expansions and long
    and/or lists are parenthesised in balanced groups, so the depth grows as a logarithm."""
    leaf = " or ".join(f'email = "a{i}@example.com"' for i in range(120))
    assert cli("segments", "create", "fa", "--where", leaf).exit_code == 0
    r = cli("segments", "create", "fm", "--where", " or ".join(['in_segment("fa")'] * 80))
    assert r.exit_code == 0, r.output
    r = cli("segments", "create", "fn", "--where", " and ".join(['not in_segment("fa")'] * 80))
    assert r.exit_code == 0, r.output
    assert cli("segments", "count", "fm").exit_code == 0


def test_a_deep_chain_of_segments_is_one_line_naming_the_cap(cli) -> None:
    """Each segment wraps the previous one 9 levels deep: the chain is refused in one line
    once it passes the nesting cap, never an error from the database."""
    assert cli("segments", "create", "s0", "--where", 'email = "a@example.com"').exit_code == 0
    for i in range(1, 60):
        r = cli("segments", "create", f"s{i}", "--where", "not (" * 9 + f'in_segment("s{i - 1}")' + ")" * 9)
        if r.exit_code != 0:
            lines = r.stderr.strip().splitlines()
            assert len(lines) == 1 and "nesting cap" in lines[0] and "internal error" not in lines[0], r.stderr[:500]
            break
        assert cli("segments", "count", f"s{i}").exit_code == 0
    else:
        raise AssertionError("59 segments each nesting the previous 9 levels deep were all accepted")
    assert i > 2  # an ordinary chain stays possible


def test_a_filter_too_deep_for_the_database_is_one_line(cli) -> None:
    """Within the parser's 40 levels, alternating and/or over attributes still overflowed
    SQLite's parser stack: an internal error. Whatever the database refuses as too complex
    is one line saying so."""
    deep = '(attributes.city = "x" and (email = "a@example.com" or ' * 19 + 'email = "b@example.com"' + "))" * 19
    r = cli("segments", "create", "deep", "--where", deep)
    if r.exit_code == 0:  # PostgreSQL parses it
        return
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 1 and len(lines) == 1, r.stderr[:500]
    assert "too complex for the database" in lines[0] and "internal error" not in lines[0], lines[0]
    assert cli("segments", "show", "deep").exit_code != 0  # nothing stored


def test_a_deep_filter_without_in_segment_is_not_blamed_on_in_segment(cli) -> None:
    """Alternating and/or nested 39 times passes the parser's 40 levels of parentheses but
    not the compiler's 40 levels of conditions: the one line says so, and does not name
    in_segment(), which the filter never used."""
    deep = 'email contains "@"'
    for i in range(39):
        deep = f'({deep} and name != "x{i}") or phone = "+1"'
    r = cli("segments", "create", "deep", "--where", deep)
    lines = r.stderr.strip().splitlines()
    assert r.exit_code != 0 and len(lines) == 1, r.stderr[:500]
    assert "nests deeper than 40 levels of and/or/not groups" in lines[0] and "in_segment" not in lines[0], lines[0]
