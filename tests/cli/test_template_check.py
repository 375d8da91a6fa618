"""`templates check NAME`: SpamAssassin score, images against text, alt text, Gmail's clip."""

from __future__ import annotations

import json
import shutil
from email.message import EmailMessage
from pathlib import Path

from campaigns.messages.template_check import GMAIL_CLIP_BYTES, check_message

REPO_TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def _message(html: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@example.com", "b@example.com", "hi"
    msg.set_content("text")
    msg.add_alternative(html, subtype="html")
    return msg.as_bytes()


def test_the_checks_find_what_they_name() -> None:
    words = " ".join(["word"] * 200)
    fine = check_message(_message(f'<p>{words}</p><img src="a.png" alt="a"><img src="p" width="1" height="1">'), spam=False)
    assert (fine.words, fine.images, fine.problems) == (200, 1, [])  # the 1x1 pixel is not a content image
    bare = check_message(_message('<p>Hi</p><img src="a.png"><img src="b.png" alt="">'), spam=False)
    assert bare.missing_alt == ["a.png"] and any("alt text" in p for p in bare.problems)
    assert any("too little text" in p for p in bare.problems)
    big = check_message(_message("<p>" + "x " * (GMAIL_CLIP_BYTES // 2 + 10) + "</p>"), spam=False)
    assert big.html_bytes > GMAIL_CLIP_BYTES and any("Gmail clips" in p for p in big.problems)


def test_the_command_passes_a_shipped_email_and_fails_a_heavy_one(cli, tmp_path) -> None:
    shutil.copytree(REPO_TEMPLATES, tmp_path / "templates", dirs_exist_ok=True)
    r = cli("templates", "check", "welcome", "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["problems"] == [] and report["images"] == 0 and report["html_bytes"] < GMAIL_CLIP_BYTES
    if shutil.which("spamassassin"):
        assert report["spam_score"] is not None and report["spam_score"] < 2.0
    (tmp_path / "templates" / "heavy").mkdir()
    (tmp_path / "templates" / "heavy" / "subject.txt").write_text("Hi")
    (tmp_path / "templates" / "heavy" / "body.html").write_text(
        '<p>Hi</p><img src="https://x.example/a.png"><a href="{{ unsubscribe_url }}">u</a>')
    r = cli("templates", "check", "heavy")
    assert r.exit_code == 1 and "no alt text" in r.stderr and "too little text" in r.stderr
    r = cli("templates", "check", "flash_sale")
    assert r.exit_code == 1 and "is an SMS" in r.stderr
