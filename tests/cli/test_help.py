"""Every command's help reads like a conventional CLI, and help and --version start fast.

Walks the whole command tree: arguments are `NAME`, flags show no value placeholder,
no Typer type labels (`<bool>`, `<str>`, `{name}`), an Examples section everywhere, and
Rich markup in help text (`[smtp]`) printed as written.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from campaigns.cli.root import COMMANDS, load_module_commands
from tests.conftest import CliRunner

TYPE_LABEL = re.compile(r"<(bool|str|int|float|path|list\[[^\]]*\]|[a-z_]+(\|[a-z_]+)+)>|\{[a-z_]+\}")
HEAVY = ("sqlalchemy", "jinja2", "aiosmtplib", "aiosmtpd", "starlette", "uvicorn", "httpx", "alembic",
         "pydantic", "dkim", "css_inline", "phonenumbers", "apscheduler", "numpy", "scipy", "campaigns.config")


def _leaves() -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = [()]
    modules = dict.fromkeys(m for m, _ in COMMANDS.values())
    for module in modules:
        for name, command in load_module_commands(module).items():
            paths.append((name,))
            for sub in getattr(command, "commands", {}) or {}:
                paths.append((name, sub))
    return paths


def _help(tmp_path: Path, path: tuple[str, ...]) -> str:
    r = CliRunner(tmp_path / "none.toml")(*path, "--help")
    assert r.exit_code == 0, (path, r.output)
    return r.stdout


def test_the_command_table_lists_exactly_the_modules_commands() -> None:
    for module in dict.fromkeys(m for m, _ in COMMANDS.values()):
        for name in load_module_commands(module):
            assert COMMANDS.get(name, ("?",))[0] == module, f"add {name!r} to COMMANDS in campaigns/cli/root.py"
    listed = {(m, n) for n, (m, _) in COMMANDS.items()}
    found = {(m, n) for m in dict.fromkeys(m for m, _ in COMMANDS.values()) for n in load_module_commands(m)}
    assert listed == found


def test_every_help_is_conventional_and_has_examples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    for path in _leaves():
        text = _help(tmp_path, path)
        where = "campaigns " + " ".join(path)
        assert not TYPE_LABEL.search(text), (where, TYPE_LABEL.search(text), text)
        assert re.search(r"Examples\s+campaigns", text), (where, text)
        usage = next(line for line in text.splitlines() if "Usage:" in line)
        assert "{" not in usage and "<" not in usage, (where, usage)
        # A flag never shows a placeholder: the --help row is just the flag and its text.
        help_row = next(line for line in text.splitlines() if "--help" in line and "Show this" in line)
        assert re.search(r"--help\s+Show this", help_row), (where, help_row)


def test_arguments_are_named_in_capitals_and_flags_take_no_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    text = _help(tmp_path, ("send",))
    assert "Usage: campaigns send [OPTIONS] NAME" in text
    assert re.search(r"--now\s+An extra run now", text)
    text = _help(tmp_path, ("contacts", "import"))
    assert re.search(r"--consent\s+\[email\|sms\]", text) and re.search(r"--source\s+SOURCE", text)


def test_markup_in_help_text_is_printed_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    assert "DKIM keys set in [smtp]" in _help(tmp_path, ("config", "dkim"))
    assert "[tracking] host:port" in _help(tmp_path, ("track", "serve"))


def _imported_after(args: list[str], tmp_path: Path) -> tuple[str, list[str]]:
    code = ("import sys\nfrom campaigns.cli import main\n"
            f"try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
            f"print('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNS_")}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
                          timeout=120)
    heavy = done.stdout.rsplit("HEAVY=", 1)[1].strip()
    return done.stdout, [m for m in heavy.split(",") if m]


def test_version_and_help_import_nothing_heavy(tmp_path: Path) -> None:
    out, heavy = _imported_after(["--version"], tmp_path)
    assert out.startswith("campaigns ") and heavy == []
    out, heavy = _imported_after(["--help"], tmp_path)
    assert "contacts" in out and "Commands" in out and heavy == []
    out, heavy = _imported_after(["--config", "x.toml", "--version"], tmp_path)
    assert out.startswith("campaigns ") and heavy == []


def test_shell_completion_installs_and_completes(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNS_")}
    env["HOME"] = str(tmp_path)
    # Typer's own switch: name the shell instead of detecting the parent process's (which
    # depends on how the tests were started).
    env["_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION"] = "1"
    exe = [sys.executable, "-m", "campaigns"]
    done = subprocess.run([*exe, "--install-completion", "bash"], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    script = tmp_path / ".bash_completions" / "campaigns.sh"
    assert script.is_file() and "_CAMPAIGNS_COMPLETE" in script.read_text()
    assert ".bash_completions/campaigns.sh" in (tmp_path / ".bashrc").read_text()
    # Completion itself: the words the shell would be offered.
    env.update({"_CAMPAIGNS_COMPLETE": "complete_bash", "COMP_WORDS": "campaigns contacts im", "COMP_CWORD": "2"})
    done = subprocess.run([sys.executable, "-c", "from campaigns.cli import main; main()"], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.stdout.split() == ["import"]


def test_usage_errors_look_like_our_errors(tmp_path: Path) -> None:
    run = CliRunner(tmp_path / "none.toml")
    r = run("new", "x", "--channel", "fax")
    assert r.exit_code == 2 and r.stderr.startswith("error: ") and "Value error" not in r.stderr
    assert "'fax' is not one of" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run("send", "x", "--bogus")
    assert r.exit_code == 2 and r.stderr.startswith("error: No such option: --bogus")
    assert "╭" not in r.output
