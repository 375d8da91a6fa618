"""`campaigns journeys lint`, `new --journey` and `show`: one line per mistake naming its line and
key, nothing written; the docs' example journey lints clean, is created and drawn as a tree."""

import re
import shutil
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs" / "journeys.md"

BAD = """\
colour = "blue"
[step.welcome]
kind = "send"
template = "no_such_template"
next = "check"
subject = "hi"

[step.check]
kind = "branch"
on = "opened"
within = "3d"
yes = "welcome"

[step.lost]
kind = "teleport"

[step.picky]
kind = "branch"
on = "filter"
filter = "purchases.count >"
within = "1d"
yes = "check"
no = "check"
"""


def _docs_journey() -> str:
    return re.search(r"```toml\n(.*?)```", DOCS.read_text(), re.S).group(1)


def test_lint_names_the_line_and_key_of_every_mistake_and_exits_non_zero(cli, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(BAD)
    r = cli("journeys", "lint", str(path))
    assert r.exit_code == 1, r.output
    lines = r.stderr.strip().splitlines()
    expected = [
        (1, "colour: unknown key"),
        (4, "step.welcome.template: template 'no_such_template' not found"),
        (6, "step.welcome.subject: unknown key for a send step"),
        (8, "step.check: a branch needs both paths: no = STEP is missing"),
        (12, "step.check.yes: 'welcome' makes a cycle"),
        (14, "step.lost: unreachable"),
        (15, "step.lost.kind: 'teleport' is not a step kind"),
        (17, "step.picky: unreachable"),
        (20, "step.picky.filter: does not parse"),
    ]
    assert len(lines) == len(expected), lines
    for line, (n, words) in zip(lines, expected, strict=True):
        assert line.startswith(f"{path}:{n}: {words}"), line


@pytest.mark.parametrize("content, said", [
    (None, "no such file"),
    (b"\xad\xff[step.a]", "not UTF-8 text (byte 0)"),
    (b"#" * 1_000_001, "larger than 1,000,000 bytes"),
])
def test_a_journey_file_that_cannot_be_read_is_one_line_naming_it(cli, tmp_path, content, said):
    path = tmp_path / "j.toml"
    if content is not None:
        path.write_bytes(content)
    for args, where in ((("journeys", "lint", str(path)), f"cannot read {path}"),
                        (("new", "j", "--segment", "all", "--channel", "email", "--journey", str(path)),
                         f"--journey: cannot read {path}")):
        r = cli(*args)
        assert r.exit_code == 1, r.output
        assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith(f"error: {where}: {said}"), r.stderr
        assert "Traceback" not in r.output


def test_new_with_a_bad_journey_refuses_the_same_way_and_writes_nothing(cli, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(BAD)
    assert cli("segments", "create", "all", "--where", 'email contains "@"').exit_code == 0
    r = cli("new", "j", "--segment", "all", "--channel", "email", "--journey", str(path))
    assert r.exit_code != 0 and f"{path}:12: step.check.yes: 'welcome' makes a cycle" in r.stderr, r.output
    assert "Traceback" not in r.output
    assert "j " not in cli("list").stdout
    r = cli("new", "j", "--segment", "all", "--channel", "email", "--journey", str(tmp_path / "missing.toml"))
    assert r.exit_code != 0 and "--journey: cannot read" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_the_docs_journey_lints_clean_is_created_and_show_draws_it(cli, tmp_path):
    shutil.copytree(DOCS.parents[1] / "templates", tmp_path / "templates", dirs_exist_ok=True)
    path = tmp_path / "welcome.toml"
    path.write_text(_docs_journey())
    r = cli("journeys", "lint", str(path), "--draw")
    assert r.exit_code == 0, r.output
    assert cli("segments", "create", "new-signups", "--where", 'email contains "@"').exit_code == 0
    r = cli("new", "welcome-journey", "--segment", "new-signups", "--channel", "email", "--journey", str(path))
    assert r.exit_code == 0, r.output
    out = cli("show", "welcome-journey").stdout
    tree = out[out.index("Journey"):]
    assert "welcome: send welcome" in tree
    assert "├─ yes: " in tree and "└─ no:  " in tree
    assert "(drawn above)" in tree
    shown = cli("show", "welcome-journey", "--json")
    assert '"journey"' in shown.stdout and '"kind": "branch"' in shown.stdout


def test_edit_gives_a_draft_a_new_journey_but_never_one_with_contacts_in_it(cli, tmp_path):
    from campaigns.config import load_settings
    from campaigns.context import App
    from campaigns.store.models import Campaign, DripEnrollment

    shutil.copytree(DOCS.parents[1] / "templates", tmp_path / "templates", dirs_exist_ok=True)
    path = tmp_path / "welcome.toml"
    path.write_text(_docs_journey())
    short = tmp_path / "short.toml"
    short.write_text('[step.only]\nkind = "send"\ntemplate = "newsletter"\n')
    assert cli("segments", "create", "all", "--where", 'email contains "@"').exit_code == 0
    assert cli("contacts", "add", "--email", "ann@example.com").exit_code == 0
    assert cli("new", "j", "--segment", "all", "--channel", "email", "--journey", str(path)).exit_code == 0
    r = cli("edit", "j", "--journey", str(short))
    assert r.exit_code == 0, r.output
    assert "only: send newsletter" in cli("show", "j").stdout
    app = App(load_settings(cli.config, environ={}))
    with app.session() as s:
        c = s.query(Campaign).filter_by(name="j").one()
        s.add(DripEnrollment(campaign_id=c.id, contact_id=1, entered_at=c.created_at))
    r = cli("edit", "j", "--journey", str(path))
    assert r.exit_code != 0 and "has contacts in its journey" in r.stderr, r.output
    assert "only: send newsletter" in cli("show", "j").stdout
    app.engine.dispose()
