"""Template files are regular files inside the templates folder (issue 17): a symlink
planted in a template folder (`body.txt -> ../../secret.key`) is refused, never read."""

from __future__ import annotations

import os

import pytest

from campaigns.errors import InputError
from campaigns.messages.templates_store import load_template

SECRET = "TOP-SECRET-MASTER-KEY-0123456789abcdef"


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "secret.key"
    path.write_text(SECRET)
    return path


def test_a_symlinked_template_file_is_refused_by_load_lint_and_render(rsettings, tdir, rcli, secret_file):
    os.symlink(secret_file, tdir / "welcome" / "body.txt")
    with pytest.raises(InputError, match=r"body\.txt: is a symlink; template files must be regular files"):
        load_template(rsettings, "welcome")
    lint = rcli("templates", "lint", "welcome")
    assert lint.exit_code == 1 and "is a symlink" in lint.stderr and SECRET not in lint.output
    render = rcli("templates", "render", "welcome", "--contact", "#1")
    assert render.exit_code != 0 and SECRET not in render.output


def test_a_symlink_to_a_system_file_and_a_symlinked_folder_are_refused(rsettings, tdir, tmp_path):
    os.symlink("/etc/passwd", tdir / "welcome" / "body.txt")
    with pytest.raises(InputError, match="is a symlink"):
        load_template(rsettings, "welcome")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "subject.txt").write_text("hi")
    (outside / "body.html").write_text("<p>{{ unsubscribe_url }}</p>")
    os.symlink(outside, tdir / "elsewhere")
    with pytest.raises(InputError, match="templates must be folders inside"):
        load_template(rsettings, "elsewhere")


def test_a_fifo_is_not_a_template_file(rsettings, tdir):
    os.mkfifo(tdir / "welcome" / "body.txt")
    with pytest.raises(InputError, match="not a regular file"):
        load_template(rsettings, "welcome")


def test_a_test_send_to_the_outbox_is_private(rcli, rsettings):
    r = rcli("templates", "send-test", "welcome", "--to", "ann@example.com")
    assert r.exit_code == 0, r.output
    outbox = rsettings.path(rsettings.sending.outbox_dir)
    files = list(outbox.glob("test-welcome-*.eml"))
    assert len(files) == 1
    assert os.stat(files[0]).st_mode & 0o777 == 0o600 and os.stat(outbox).st_mode & 0o777 == 0o700
