"""DKIM: what reaches a real SMTP server verifies with dkimpy against the published record,
the signature covers the one-click unsubscribe headers, and a bad setup is one clear line."""

import asyncio
import shutil
from pathlib import Path

import dkim
import pytest

from campaigns import dkim_signing
from campaigns.config import load_settings
from campaigns.errors import ConfigError
from campaigns.models import Campaign
from campaigns.timespec import utcnow
from scheduler.dispatcher import Dispatcher
from scheduler.planner import plan_firing
from tests.conftest import CliRunner, write_config
from tests.scheduler.conftest import add_people, make_campaign

KEYS = Path(__file__).resolve().parents[1] / "support" / "dkim"


def _dispatch(app, now):
    async def go():
        dispatcher = Dispatcher(app)
        try:
            return await dispatcher.dispatch_once(now)
        finally:
            await dispatcher.close()  # stops the signing processes
    return asyncio.run(go())


def _dkim_toml(key: Path, domain: str = "example.com", selector: str = "mail2026") -> str:
    return f'dkim_domain = "{domain}"\ndkim_selector = "{selector}"\ndkim_private_key_file = "{key}"\n'


def _dns(records: dict[str, str]):
    """A resolver for dkim.verify that answers from `records` only."""
    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        value = records.get(name.decode().rstrip("."))
        return value.encode() if value is not None else None
    return lookup


def _published(key: Path) -> dict[str, str]:
    signer = dkim_signing.DkimSigner(b"example.com", b"mail2026", key.read_bytes())
    return {signer.record_name: signer.record_value}


@pytest.fixture
def signed_mail(make_app, smtp, tmp_path):
    """Five messages sent through the dispatcher to aiosmtpd with DKIM on: the raw bytes received."""
    key = tmp_path / "dkim.pem"
    shutil.copy(KEYS / "test_a.pem", key)
    app = make_app(smtp.config_toml() + _dkim_toml(Path("dkim.pem")))  # relative to the config's folder
    add_people(app, 5)
    cid = make_campaign(app)
    now = utcnow()
    with app.session() as s:
        plan_firing(s, app.settings, s.get(Campaign, cid), now.replace(microsecond=0), now)
    stats = _dispatch(app, now)
    assert stats.counts["sent"] == 5
    assert len(smtp.raw) == 5
    return smtp.raw


def test_every_message_verifies_against_the_published_key(signed_mail):
    dns = _dns(_published(KEYS / "test_a.pem"))
    for raw in signed_mail:
        assert raw.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com;")
        assert dkim.verify(raw, dnsfunc=dns)


def test_the_signature_covers_and_oversigns_the_unsubscribe_headers(signed_mail):
    raw = signed_mail[0]
    d = dkim.DKIM(raw)
    sig = dkim.util.parse_tag_value(d.headers[0][1])
    signed = [h.strip() for h in sig[b"h"].split(b":")]
    for name in (b"list-unsubscribe", b"list-unsubscribe-post", b"from", b"subject"):
        assert signed.count(name) == 2, name  # once for the header, once more against additions


def test_a_changed_or_added_unsubscribe_header_breaks_the_signature(signed_mail):
    dns = _dns(_published(KEYS / "test_a.pem"))
    raw = signed_mail[0]
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"List-Unsubscribe: <" in head
    tampered = head.replace(b"List-Unsubscribe: <http", b"List-Unsubscribe: <https://evil.example/x?u=http", 1)
    assert tampered != head
    assert not dkim.verify(tampered + b"\r\n\r\n" + body, dnsfunc=dns)
    # A relay prepending its own copy: verifiers read the bottom-most instance, so only
    # over-signing (naming the header once more, for "no further instance") catches it.
    added = b"List-Unsubscribe: <https://evil.example/unsub>\r\n" + raw
    assert not dkim.verify(added, dnsfunc=dns)
    body_changed = raw.replace(b"Hello", b"Hullo", 1) if b"Hello" in body else raw[:-20] + b"x" + raw[-19:]
    assert not dkim.verify(body_changed, dnsfunc=dns)


def test_another_key_in_dns_does_not_verify(signed_mail):
    assert not dkim.verify(signed_mail[0], dnsfunc=_dns(_published(KEYS / "test_b.pem")))


def test_dkim_is_off_by_default_and_messages_carry_no_signature(make_app, smtp):
    app = make_app(smtp.config_toml())
    assert dkim_signing.signer(app.settings) is None
    add_people(app, 2)
    cid = make_campaign(app)
    now = utcnow()
    with app.session() as s:
        plan_firing(s, app.settings, s.get(Campaign, cid), now.replace(microsecond=0), now)
    _dispatch(app, now)
    assert len(smtp.raw) == 2
    assert all(b"DKIM-Signature" not in raw for raw in smtp.raw)


@pytest.mark.parametrize(("toml", "expected"), [
    ('dkim_domain = "example.com"\n', "dkim_selector, dkim_private_key_file is empty"),
    (_dkim_toml(Path("missing.pem")), "dkim_private_key_file: cannot read"),
    (_dkim_toml(Path("garbage.pem")), "is not a PEM RSA private key"),
    (_dkim_toml(KEYS / "test_a.pem", domain="exa mple.com"), "dkim_domain: 'exa mple.com' is not a valid DNS label"),
])
def test_a_bad_setup_is_one_line_naming_the_key(tmp_path, db_url, toml, expected):
    (tmp_path / "garbage.pem").write_text("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
    cfg = write_config(tmp_path, db_url, "[smtp]\n" + toml)
    settings = load_settings(cfg, environ={})
    with pytest.raises(ConfigError, match="smtp"):
        dkim_signing.signer(settings)
    for command in (("config", "check"), ("worker",), ("config", "dkim")):
        r = CliRunner(cfg)(*command)
        assert r.exit_code != 0, command
        assert expected in r.stderr, (command, r.stderr)
        assert "Traceback" not in r.output
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_config_dkim_prints_the_record_that_verifies(tmp_path, db_url, make_app, smtp):
    cfg = write_config(tmp_path, db_url, "[smtp]\n" + _dkim_toml(KEYS / "test_b.pem", selector="s1"))
    r = CliRunner(cfg)("config", "dkim")
    assert r.exit_code == 0, r.output
    lines = dict(line.strip().split(":  ", 1) if ":  " in line else (line.strip(), "") for line in r.stdout.splitlines())
    assert lines["name"] == "s1._domainkey.example.com"
    value = r.stdout.split("value: ", 1)[1].strip()
    assert value.startswith("v=DKIM1; k=rsa; p=") and "\n" not in value
    # A message signed with the same key verifies against exactly what was printed.
    signer = dkim_signing.signer(load_settings(cfg, environ={}))
    message = (b"From: a@example.com\r\nTo: b@example.org\r\nSubject: hi\r\n"
               b"List-Unsubscribe: <https://x.example/u>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\nhello\r\n")
    assert dkim.verify(signer.sign(message), dnsfunc=_dns({"s1._domainkey.example.com": value}))
    checked = CliRunner(cfg)("config", "check")
    assert checked.exit_code == 0 and "DKIM: email is signed as d=example.com s=s1" in checked.stdout


def test_config_dkim_when_off_says_how_to_turn_it_on(cli):
    r = cli("config", "dkim")
    assert r.exit_code != 0
    assert "DKIM is off" in r.stderr and "dkim_private_key_file" in r.stderr


def test_the_signing_pool_survives_a_dead_worker_process():
    import os
    import signal
    from concurrent.futures.process import BrokenProcessPool

    from scheduler.dkim_pool import DkimPool

    signer = dkim_signing.DkimSigner(b"example.com", b"mail2026", (KEYS / "test_a.pem").read_bytes())
    dns = _dns(_published(KEYS / "test_a.pem"))
    message = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nhello\r\n"
    pool = DkimPool(signer, processes=1)

    async def scenario():
        first = await pool.sign(message)
        for pid in list(pool._pool._processes):  # the worker dies (OOM killer, an operator's kill -9)
            os.kill(pid, signal.SIGKILL)
        with pytest.raises(BrokenProcessPool):
            for _ in range(50):  # until the executor notices
                await pool.sign(message)
                await asyncio.sleep(0.05)
        return first, await pool.sign(message)  # a fresh pool

    try:
        first, after = asyncio.run(scenario())
    finally:
        pool.close()
    assert dkim.verify(first, dnsfunc=dns) and dkim.verify(after, dnsfunc=dns)
