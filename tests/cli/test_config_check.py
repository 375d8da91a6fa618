"""`config check` and `daemon` refuse configuration that cannot work, in one line each."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CliRunner, _sqlite_template, write_config


@pytest.fixture
def db_url(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """SQLite only: these are checks of the configuration, the same on every backend."""
    target = tmp_path / "campaigns.db"
    target.write_bytes(_sqlite_template(tmp_path_factory).read_bytes())
    return f"sqlite:///{target}"


def _cli(tmp_path: Path, db_url: str, extra: str, templates: bool = True) -> CliRunner:
    if templates:
        (tmp_path / "templates").mkdir(exist_ok=True)
    return CliRunner(write_config(tmp_path, db_url, extra))


@pytest.mark.parametrize(("section", "key", "value"), [
    ("sending", "batch_size", "0"), ("sending", "concurrency", "0"), ("sending", "lease_seconds", "0"),
    ("sending", "max_attempts", "0"), ("sending", "poll_seconds", "0"), ("sending", "batch_size", "-5"),
    ("sending", "heartbeat_seconds", "0"),
    ("smtp", "pool_size", "0"), ("smtp", "timeout_seconds", "0"), ("tracking", "port", "0"),
])
def test_non_positive_sizes_are_refused(tmp_path, db_url, section, key, value):
    result = _cli(tmp_path, db_url, f"[{section}]\n{key} = {value}\n")("config", "check")
    assert result.exit_code == 1
    assert f"[{section}] {key}" in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.output


@pytest.mark.parametrize("url", ["not a url", "ftp://t.example.com", "t.example.com/track", "https://", "/relative"])
def test_public_url_must_be_an_absolute_http_url(tmp_path, db_url, url):
    result = _cli(tmp_path, db_url, f'[tracking]\npublic_url = "{url}"\n')("config", "check")
    assert result.exit_code == 1
    assert "[tracking] public_url" in result.stderr and "http" in result.stderr, result.output


def test_a_missing_templates_folder_is_refused(tmp_path, db_url):
    result = _cli(tmp_path, db_url, 'templates_dir = "no-such-folder"\n', templates=False)("config", "check")
    assert result.exit_code == 1
    assert "templates_dir" in result.stderr and "no-such-folder" in result.stderr, result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_smtp_host_that_does_not_resolve_is_a_warning(tmp_path, db_url):
    config = '[sending]\ntransport = "smtp"\npostal_address = "1 Main St, Springfield"\n[smtp]\nhost = "no-such-host.invalid"\n'
    result = _cli(tmp_path, db_url, config)("config", "check")
    assert result.exit_code == 0, result.output
    assert "warning" in result.stderr and "no-such-host.invalid" in result.stderr, result.output


def test_a_good_config_passes(tmp_path, db_url):
    result = _cli(tmp_path, db_url, "")("config", "check")
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output


def test_the_daemon_refuses_a_busy_tracking_port_in_one_line(tmp_path, db_url):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = write_config(tmp_path, db_url, f'[tracking]\nhost = "127.0.0.1"\nport = {port}\n'
                                                f'public_url = "http://127.0.0.1:{port}"\n')
        (tmp_path / "templates").mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNS_")}
        proc = subprocess.Popen([sys.executable, "-m", "campaigns", "--config", str(config), "daemon"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"the daemon kept running on a busy port: {out}{err}")
    assert proc.returncode == 1, out + err
    assert f"127.0.0.1:{port}" in err and "in use" in err
    assert "Traceback" not in out + err and len((out + err).strip().splitlines()) == 1, out + err
