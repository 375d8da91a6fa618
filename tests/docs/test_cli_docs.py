"""Every command and option of the CLI is documented (as sqlite-utils' tests/test_docs.py does),
and docs/cli.md, generated from the app by `python -m scripts.cli_docs`, is current."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _cli_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("scripts_cli_docs", ROOT / "scripts" / "cli_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


cli_docs = _cli_docs()
GROUP = cli_docs.root_command()
COMMANDS = list(cli_docs.walk(GROUP, cli_docs.root_context(GROUP)))
DOCS = "\n".join(p.read_text(encoding="utf-8") for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])


def _options() -> list[tuple[str, str]]:
    return [(cli_docs.command_path(ctx), name) for command, ctx in COMMANDS for p in command.params
            if p.param_type_name == "option" and not p.hidden for name in cli_docs.option_names(p)]


def test_the_walk_finds_nested_commands_and_their_options() -> None:
    # A guard: an empty walk would make the tests below pass vacuously.
    paths = {cli_docs.command_path(ctx) for _c, ctx in COMMANDS}
    assert {"campaigns", "campaigns contacts import", "campaigns templates send-test", "campaigns demo"} <= paths
    assert ("campaigns templates send-test", "--to") in _options()


@pytest.mark.parametrize("path", [cli_docs.command_path(ctx) for _c, ctx in COMMANDS])
def test_every_command_is_documented(path: str) -> None:
    assert f"`{path}`" in DOCS or re.search(rf"^\s*{re.escape(path)}\b", DOCS, flags=re.M), path


@pytest.mark.parametrize(("path", "option"), _options())
def test_every_option_is_documented(path: str, option: str) -> None:
    section = DOCS.split(f"`{path}`\n", 1)
    assert len(section) == 2, f"{path} has no section"
    own = section[1].split("\n#", 1)[0]  # up to the next heading
    assert f"`{option}`" in own, f"{path} {option}"


@pytest.mark.parametrize("path", [cli_docs.command_path(ctx) for _c, ctx in COMMANDS])
def test_every_command_says_what_it_does(path: str) -> None:
    command = next(c for c, ctx in COMMANDS if cli_docs.command_path(ctx) == path)
    assert (command.help or "").strip(), f"{path} has no help text"


def test_the_cli_reference_is_current() -> None:
    written = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8") if (ROOT / "docs" / "cli.md").exists() else ""
    assert written == cli_docs.render(), "docs/cli.md is out of date: run python -m scripts.cli_docs"
