"""The README's walkthrough runs as shown: every ```sh block of the Walkthrough section, in
order, in one shell, from a folder laid out like the repository (config.toml, templates/)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def walkthrough_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Walkthrough", 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.S)


def test_the_walkthrough_has_the_steps_a_newcomer_needs() -> None:
    script = "\n".join(walkthrough_blocks())
    for step in ("campaigns init", "contacts import", "segments create", "templates lint", "campaigns new",
                 "send thanks --now", "report thanks"):
        assert step in script, step


def test_the_walkthrough_runs_as_shown(tmp_path: Path) -> None:
    shutil.copy(ROOT / "config.toml", tmp_path / "config.toml")
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    script = "set -euo pipefail\n" + "\n".join(walkthrough_blocks())
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNS_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "160"
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    shop = tmp_path / "shop"
    assert (shop / "thanks.html").exists() and (shop / "thanks.json").exists()
    assert any((shop / "outbox").rglob("*.eml"))  # the campaign really went out (file transport)
    assert '"sent":' in (shop / "thanks.json").read_text()


def test_the_dkim_steps_run_as_shown(tmp_path: Path) -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.findall(r"```sh\n(.*?)```", text.split("To sign mail with DKIM", 1)[1], flags=re.S)[0]
    shutil.copy(ROOT / "config.toml", tmp_path / "config.toml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNS_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(["bash", "-c", "set -euo pipefail\n" + block], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "mail2026._domainkey.example.com" in done.stdout
    assert "v=DKIM1; k=rsa; p=MII" in done.stdout  # a SubjectPublicKeyInfo for a 2048-bit key
    assert "mail2026-ed25519._domainkey.example.com" in done.stdout and "v=DKIM1; k=ed25519; p=" in done.stdout
