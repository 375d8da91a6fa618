"""DKIM: what reaches a real SMTP server verifies with dkimpy and with Perl's Mail::DKIM
against the published record, the signature covers the one-click unsubscribe headers, an
Ed25519 signature (RFC 8463) rides along when configured, and a bad setup is one clear line."""

import asyncio
import shutil
import subprocess
import time
from pathlib import Path

import dkim
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaigns.config import load_settings
from campaigns.errors import ConfigError
from campaigns.messages import dkim_signing
from campaigns.store.models import Campaign
from campaigns.timespec import utcnow
from scheduler.dispatcher import Dispatcher
from scheduler.planner import plan_firing
from tests.conftest import CliRunner, write_config
from tests.scheduler.conftest import add_people, make_campaign

KEYS = Path(__file__).resolve().parents[1] / "support" / "dkim"
VERIFY_PL = Path(__file__).resolve().parents[1] / "support" / "dkim_verify.pl"
HAS_MAIL_DKIM = shutil.which("perl") is not None and subprocess.run(
    ["perl", "-MMail::DKIM::Verifier", "-e", "1"], capture_output=True).returncode == 0
needs_mail_dkim = pytest.mark.skipif(not HAS_MAIL_DKIM, reason="Perl's Mail::DKIM is not installed here "
                                     "(apt-get install libmail-dkim-perl; .ci/run installs it)")


def mail_dkim(raw: bytes, records: dict[str, str]) -> list[str]:
    """Mail::DKIM's verdict, one line per signature then 'overall: ...' (tests/support/dkim_verify.pl)."""
    done = subprocess.run(["perl", str(VERIFY_PL), *(f"{k}={v}" for k, v in records.items())],
                          input=raw, capture_output=True, check=True, timeout=60)
    return done.stdout.decode().splitlines()


def _dispatch(app, now):
    async def go():
        dispatcher = Dispatcher(app)
        try:
            return await dispatcher.dispatch_once(now)
        finally:
            await dispatcher.close()  # stops the signing process
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
    assert stats.counts["sent"] == 5, dict(stats.counts)
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
    ('dkim_domain = "example.com"\n', "dkim_selector and dkim_private_key_file are empty"),
    ('dkim_domain = "example.com"\ndkim_selector = "s"\n', "dkim_private_key_file is empty"),
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


def test_the_signing_process_signs_a_batch_and_refuses_only_what_cannot_be_signed():
    from scheduler.dkim_pool import CHUNK, DkimPool

    signer = dkim_signing.DkimSigner(b"example.com", b"mail2026", (KEYS / "test_a.pem").read_bytes())
    dns = _dns(_published(KEYS / "test_a.pem"))
    messages = [f"From: a@example.com\r\nTo: b{i}@example.org\r\nSubject: hi {i}\r\n\r\nhello {i}\r\n".encode()
                for i in range(40)]
    bad = CHUNK + 3  # inside the second hand-off, not at its edge
    messages.insert(bad, b"no colon in this header line\r\n\r\nbody\r\n")
    pool = DkimPool(signer)

    async def scenario():  # type: ignore[no-untyped-def]
        signed = await asyncio.gather(*pool.sign_all(messages), return_exceptions=True)
        return signed, await pool.sign_all(messages[:1])[0]  # the pool goes on after a refusal

    try:
        signed, after = asyncio.run(scenario())
    finally:
        pool.close()
    assert isinstance(signed[bad], dkim_signing.DkimSigningError)
    good = [(m, s) for i, (m, s) in enumerate(zip(messages, signed, strict=True)) if i != bad]
    assert all(isinstance(s, bytes) and s.endswith(m) and dkim.verify(s, dnsfunc=dns) for m, s in good)
    assert len(good) == 40 and dkim.verify(after, dnsfunc=dns)


def _signer_with_ed25519() -> dkim_signing.DkimSigner:
    return dkim_signing.DkimSigner(b"example.com", b"mail2026", (KEYS / "test_a.pem").read_bytes(),
                                   (KEYS / "test_ed25519.pem").read_bytes())


def test_the_process_signs_byte_for_byte_what_signing_in_the_sender_makes(monkeypatch):
    """The work split across two processes (prepare here, the key operations there, finish
    here) gives the same header as `DkimSigner.sign`, both signatures included."""
    from scheduler.dkim_pool import DkimPool

    monkeypatch.setattr(time, "time", lambda: 1_790_000_000)
    signer = _signer_with_ed25519()
    message = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: hi  there\r\n\r\nhello\t world \r\n\r\n"
    pool = DkimPool(signer)

    async def scenario() -> bytes:
        return await asyncio.wait_for(pool.sign_all([message])[0], 30)

    try:
        signed = asyncio.run(scenario())
    finally:
        pool.close()
    assert signed == signer.sign(message)


def test_a_batch_larger_than_the_pipes_hold_is_signed_without_either_side_waiting_for_the_other(monkeypatch):
    """The sender hands a whole batch over without reading answers (it is rendering); with
    small pipes the process fills its answer pipe and stops reading, and the sender keeps
    what does not fit instead of blocking on a full pipe (a deadlock): all are signed."""
    from scheduler import dkim_pool

    monkeypatch.setattr(dkim_pool, "_PIPE_BYTES", 4096)  # the smallest pipe Linux gives
    signer = dkim_signing.DkimSigner(b"example.com", b"mail2026", (KEYS / "test_a.pem").read_bytes())
    pool = dkim_pool.DkimPool(signer)
    messages = [f"From: a@example.com\r\nTo: b{i}@example.org\r\nSubject: hi\r\n\r\nhello\r\n".encode()
                for i in range(1500)]

    async def scenario():  # type: ignore[no-untyped-def]
        futures = pool.sign_all(messages)  # one synchronous hand-over of everything: the loop reads nothing meanwhile
        return await asyncio.wait_for(asyncio.gather(*futures), 120)

    try:
        signed = asyncio.run(scenario())
    finally:
        pool.close()
    dns = _dns(_published(KEYS / "test_a.pem"))
    assert len(signed) == 1500 and all(s.endswith(m) for s, m in zip(signed, messages, strict=True))
    assert dkim.verify(signed[0], dnsfunc=dns) and dkim.verify(signed[-1], dnsfunc=dns)


def test_a_signing_process_that_dies_fails_its_messages_as_retryable_and_the_next_batch_gets_a_new_one():
    """Killed mid-batch (OOM, an operator): every message still waiting gets RuntimeError,
    which the hand-over records as transient (nothing was handed over); the next hand-off
    starts a new process."""
    from scheduler.dkim_pool import CHUNK, DkimPool

    signer = dkim_signing.DkimSigner(b"example.com", b"mail2026", (KEYS / "test_a.pem").read_bytes())
    pool = DkimPool(signer)
    message = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nhello\r\n"

    async def scenario():  # type: ignore[no-untyped-def]
        await pool.sign_all([message])[0]  # the process exists
        first = pool._children[0].proc
        first.kill()
        first.wait()
        lost = await asyncio.wait_for(asyncio.gather(*pool.sign_all([message] * 20), return_exceptions=True), 30)
        again = await asyncio.wait_for(pool.sign_all([message])[0], 30)
        return first, lost, again

    try:
        first, lost, again = asyncio.run(scenario())
        assert pool._children and pool._children[0].proc is not first
    finally:
        pool.close()
    dns = _dns(_published(KEYS / "test_a.pem"))
    # The first hand-off met the dead process; the next one (the last 4) already had a new one.
    assert len(lost) == 20 and all(isinstance(r, RuntimeError) for r in lost[:CHUNK])
    assert all(dkim.verify(r, dnsfunc=dns) for r in lost[CHUNK:]) and dkim.verify(again, dnsfunc=dns)


def test_closing_the_pool_fails_what_still_waits_and_ends_the_process():
    """A sender closing (SIGTERM) while a batch waits for signatures: each message gets
    RuntimeError (transient), and no signing process is left behind."""
    from scheduler.dkim_pool import DkimPool

    pool = DkimPool(dkim_signing.DkimSigner(b"example.com", b"mail2026", (KEYS / "test_a.pem").read_bytes()))
    message = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nhello\r\n"

    async def scenario():  # type: ignore[no-untyped-def]
        futures = pool.sign_all([message] * 200)
        proc = pool._children[0].proc
        pool.close()  # before the loop has read any answer
        return proc, await asyncio.gather(*futures, return_exceptions=True)

    proc, results = asyncio.run(scenario())
    assert all(isinstance(r, RuntimeError) for r in results)
    assert proc.poll() is not None  # ended


def test_answers_for_messages_nobody_waits_for_are_dropped_quietly():
    """Rows released mid-batch (a pause, SIGTERM) cancel their futures; the answers that
    still arrive are dropped, the loop reports nothing, and the pool goes on."""
    from scheduler.dkim_pool import CHUNK, DkimPool

    pool = DkimPool(dkim_signing.DkimSigner(b"example.com", b"mail2026", (KEYS / "test_a.pem").read_bytes()))
    message = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nhello\r\n"
    reported: list[dict] = []

    async def scenario():  # type: ignore[no-untyped-def]
        asyncio.get_running_loop().set_exception_handler(lambda _loop, context: reported.append(context))
        futures = pool.sign_all([message] * (CHUNK * 4))
        for future in futures[CHUNK:]:
            future.cancel()
        first = await asyncio.wait_for(asyncio.gather(*futures[:CHUNK]), 30)
        await asyncio.sleep(0.3)  # the cancelled ones' answers arrive meanwhile
        return first, await asyncio.wait_for(pool.sign_all([message])[0], 30)

    try:
        first, after = asyncio.run(scenario())
    finally:
        pool.close()
    dns = _dns(_published(KEYS / "test_a.pem"))
    assert len(first) == CHUNK and all(dkim.verify(s, dnsfunc=dns) for s in first) and dkim.verify(after, dnsfunc=dns)
    assert reported == []


def test_the_private_key_never_appears_in_the_signing_processs_command_line_or_environment():
    """Anyone on the host can read a process's command line (ps) and its owner its environment:
    the key goes to the signing process through its input pipe only."""
    from scheduler.dkim_pool import DkimPool

    pem = (KEYS / "test_a.pem").read_bytes()
    pool = DkimPool(dkim_signing.DkimSigner(b"example.com", b"mail2026", pem))
    message = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nhello\r\n"

    async def scenario():  # type: ignore[no-untyped-def]
        await asyncio.wait_for(pool.sign_all([message])[0], 30)
        pid = pool._children[0].proc.pid
        return Path(f"/proc/{pid}/cmdline").read_bytes(), Path(f"/proc/{pid}/environ").read_bytes()

    try:
        cmdline, environ = asyncio.run(scenario())
    finally:
        pool.close()
    body = b"".join(pem.splitlines()[1:-1])
    assert b"PRIVATE KEY" not in cmdline + environ and body[:40] not in cmdline + environ


def test_each_email_goes_to_the_signer_as_soon_as_it_is_rendered(make_app):
    """The render hands every email on before it renders the next (so signing overlaps
    rendering), the same bytes it returns, in order."""
    from scheduler.outbox import claim
    from scheduler.render_stage import RenderStage

    app = make_app()
    add_people(app, 6)
    cid = make_campaign(app)
    now = utcnow()
    with app.session() as s:
        plan_firing(s, app.settings, s.get(Campaign, cid), now.replace(microsecond=0), now)
    batch = claim(app.engine, app.settings, "w", now, 100)
    stage = RenderStage(app)
    seen: list[tuple[int, bytes, int]] = []
    rendered = 0
    real = stage._template

    def counting(name: str):  # type: ignore[no-untyped-def]
        nonlocal rendered
        rendered += 1  # one look-up per row, before it renders
        return real(name)

    stage._template = counting  # type: ignore[method-assign]
    messages, failures = stage.render(batch, on_email=lambda row, email: seen.append((row.id, email.data, rendered)))
    assert not failures and len(messages) == 6
    assert [(row_id, data) for row_id, data, _ in seen] == [(row.id, msg.data) for row, msg in messages]
    assert [at for _, _, at in seen] == [1, 2, 3, 4, 5, 6]  # handed on before the next row was rendered


def test_dkim_processes_and_its_old_name_dkim_threads_both_read(tmp_path):
    from campaigns.config import load_settings

    (tmp_path / "config.toml").write_text(f'secret_key = "{"k" * 40}"\n', encoding="utf-8")
    assert load_settings(tmp_path / "config.toml", environ={}).smtp.dkim_processes == 1  # what `config show` prints
    for name in ("dkim_processes", "dkim_threads"):  # its name while signing ran on threads still reads
        (tmp_path / "config.toml").write_text(f'secret_key = "{"k" * 40}"\n[smtp]\n{name} = 3\n', encoding="utf-8")
        assert load_settings(tmp_path / "config.toml", environ={}).smtp.dkim_processes == 3


@needs_mail_dkim
def test_every_message_verifies_with_perls_mail_dkim_too(signed_mail):
    records = _published(KEYS / "test_a.pem")
    for raw in signed_mail:
        assert mail_dkim(raw, records) == ["pass a=rsa-sha256 d=example.com s=mail2026 (pass)", "overall: pass"]
    tampered = signed_mail[0].replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click",
                                      b"List-Unsubscribe-Post: List-Unsubscribe=Two-Click", 1)
    assert mail_dkim(tampered, records)[-1] == "overall: fail"
    assert mail_dkim(signed_mail[0], _published(KEYS / "test_b.pem"))[-1] == "overall: fail"


def test_rsa_is_signed_through_openssl_not_dkimpys_pure_python(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("dkimpy's pure-Python RSA was used")

    monkeypatch.setattr(dkim, "RSASSA_PKCS1_v1_5_sign", refuse)
    monkeypatch.setattr(dkim.crypto, "RSASSA_PKCS1_v1_5_sign", refuse)
    signer = dkim_signing.DkimSigner(b"example.com", b"mail2026", (KEYS / "test_a.pem").read_bytes())
    message = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nhello\r\n"
    assert dkim.verify(signer.sign(message), dnsfunc=_dns(_published(KEYS / "test_a.pem")))


_LINE = st.text(st.sampled_from("ab \t=;:<>Zz9.-"), max_size=30)
# Extra fields, some of them signed names (a repeat, other case, folded), to exercise selection
# from the bottom up and relaxed canonicalisation; a bare-LF message takes dkimpy's parser.
_FIELD = st.builds(lambda name, gap, value, fold: name + b":" + gap + value.encode() + (b"\r\n\t" + fold.encode() if fold else b""),
                   st.sampled_from([b"X-Extra", b"SUBJECT", b"to", b"Reply-To", b"list-unsubscribe", b"Content-Type"]),
                   st.sampled_from([b"", b" ", b"\t ", b"  "]), _LINE, st.none() | _LINE)
_MESSAGES = st.builds(
    lambda subject, extra, body, tail, lf: (lambda m: m.replace(b"\r\n", b"\n") if lf else m)(
        b"From: Shop <news@example.com>\r\nTo: b@example.org\r\nSubject: " + subject.encode() + b"\r\n"
        + b"".join(e + b"\r\n" for e in extra)
        + b"List-Unsubscribe: <https://x.example/u>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        + b"Date: Fri, 27 Nov 2026 15:00:00 +0000\r\n\r\n" + "\r\n".join(body).encode() + b"\r\n" * tail),
    _LINE, st.lists(_FIELD, max_size=4), st.lists(_LINE, max_size=6), st.integers(0, 3), st.booleans())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(message=_MESSAGES)
def test_the_signature_is_byte_for_byte_what_dkimpy_makes(message, monkeypatch):
    """PKCS#1 v1.5 and Ed25519 are deterministic: with the clock fixed, our header must equal
    dkimpy's own, so the canonicalisation, the signed headers and the folding are dkimpy's."""
    import base64

    from cryptography.hazmat.primitives import serialization

    monkeypatch.setattr(time, "time", lambda: 1_790_000_000)
    rsa_pem = (KEYS / "test_a.pem").read_bytes()
    ed_pem = (KEYS / "test_ed25519.pem").read_bytes()
    ours = dkim_signing.DkimSigner(b"example.com", b"mail2026", rsa_pem, ed_pem).sign(message)
    include = list(dkim_signing.SIGNED + dkim_signing.OVERSIGNED)
    theirs_rsa = dkim.sign(message, b"mail2026", b"example.com", rsa_pem, canonicalize=(b"relaxed", b"relaxed"),
                           include_headers=include)
    seed = serialization.load_pem_private_key(ed_pem, None).private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    theirs_ed = dkim.sign(message, b"mail2026-ed25519", b"example.com", base64.b64encode(seed),
                          signature_algorithm=b"ed25519-sha256", canonicalize=(b"relaxed", b"relaxed"),
                          include_headers=include)
    assert ours == theirs_rsa + theirs_ed + message


@pytest.fixture
def dual_signed_mail(make_app, smtp, tmp_path):
    """Three messages through the dispatcher with an RSA and an Ed25519 key configured."""
    shutil.copy(KEYS / "test_a.pem", tmp_path / "dkim.pem")
    shutil.copy(KEYS / "test_ed25519.pem", tmp_path / "dkim-ed25519.pem")
    app = make_app(smtp.config_toml() + _dkim_toml(Path("dkim.pem")) + 'dkim_ed25519_key_file = "dkim-ed25519.pem"\n')
    add_people(app, 3)
    cid = make_campaign(app)
    now = utcnow()
    with app.session() as s:
        plan_firing(s, app.settings, s.get(Campaign, cid), now.replace(microsecond=0), now)
    stats = _dispatch(app, now)
    assert stats.counts["sent"] == 3, dict(stats.counts)  # what the others became, if a loaded machine makes one transient
    signer = dkim_signing.signer(app.settings)
    assert signer is not None
    return smtp.raw, dict(signer.records)


def test_an_ed25519_second_signature_verifies_with_dkimpy(dual_signed_mail):
    raws, records = dual_signed_mail
    assert set(records) == {"mail2026._domainkey.example.com", "mail2026-ed25519._domainkey.example.com"}
    assert records["mail2026-ed25519._domainkey.example.com"].startswith("v=DKIM1; k=ed25519; p=")
    dns = _dns(records)
    for raw in raws:
        d = dkim.DKIM(raw)
        sigs = [dkim.util.parse_tag_value(v) for k, v in d.headers if k.lower() == b"dkim-signature"]
        assert [(s[b"a"], s[b"s"]) for s in sigs] == [(b"rsa-sha256", b"mail2026"), (b"ed25519-sha256", b"mail2026-ed25519")]
        assert d.verify(idx=0, dnsfunc=dns) and d.verify(idx=1, dnsfunc=dns)
        rsa_h, ed_h = (b"".join(s[b"h"].split()) for s in sigs)  # folded at different places
        assert rsa_h == ed_h  # the same headers, over-signed alike
    tampered = raws[0].replace(b"List-Unsubscribe: <http", b"List-Unsubscribe: <https://evil.example/?", 1)
    assert not dkim.DKIM(tampered).verify(idx=1, dnsfunc=dns)
    # Without the Ed25519 record published, that signature does not verify (and the RSA one still does).
    rsa_only = {k: v for k, v in records.items() if "ed25519" not in k}
    assert dkim.DKIM(raws[0]).verify(idx=0, dnsfunc=_dns(rsa_only))
    assert not dkim.DKIM(raws[0]).verify(idx=1, dnsfunc=_dns(rsa_only))


@needs_mail_dkim
def test_mail_dkim_passes_a_dual_signed_message(dual_signed_mail):
    raws, records = dual_signed_mail
    lines = mail_dkim(raws[0], records)
    assert lines[0] == "pass a=rsa-sha256 d=example.com s=mail2026 (pass)" and lines[-1] == "overall: pass"
    ed = lines[1]  # Debian 12's Mail::DKIM (1.20230212) has no Ed25519: it must not count it as a pass or a forgery
    assert "a=ed25519-sha256" in ed and (ed.startswith("pass") or ed.startswith(("invalid", "none", "neutral"))), ed


def test_config_dkim_prints_both_records(tmp_path, db_url):
    cfg = write_config(tmp_path, db_url, "[smtp]\n" + _dkim_toml(KEYS / "test_a.pem", selector="s1")
                       + f'dkim_ed25519_key_file = "{KEYS / "test_ed25519.pem"}"\n')
    r = CliRunner(cfg)("config", "dkim")
    assert r.exit_code == 0, r.output
    names = [line.split(":  ", 1)[1].strip() for line in r.stdout.splitlines() if line.strip().startswith("name:")]
    values = [line.split("value: ", 1)[1].strip() for line in r.stdout.splitlines() if "value: " in line]
    assert names == ["s1._domainkey.example.com", "s1-ed25519._domainkey.example.com"]
    assert values[0].startswith("v=DKIM1; k=rsa; p=MII") and values[1].startswith("v=DKIM1; k=ed25519; p=")
    signer = dkim_signing.signer(load_settings(cfg, environ={}))
    message = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nhello\r\n"
    d = dkim.DKIM(signer.sign(message))
    dns = _dns(dict(zip(names, values, strict=True)))
    assert d.verify(idx=0, dnsfunc=dns) and d.verify(idx=1, dnsfunc=dns)
    as_json = CliRunner(cfg)("config", "dkim", "--json")
    assert as_json.exit_code == 0 and '"ed25519"' in as_json.stdout and "s1-ed25519._domainkey" in as_json.stdout
    (tmp_path / "templates").mkdir(exist_ok=True)  # config check also wants the templates folder
    checked = CliRunner(cfg)("config", "check")
    assert checked.exit_code == 0 and "d=example.com s=s1 (rsa-sha256) and s=s1-ed25519 (ed25519-sha256)" in checked.stdout


@pytest.mark.parametrize(("key", "expected"), [
    ("missing-ed.pem", "dkim_ed25519_key_file: cannot read"),
    ("garbage.pem", "is not a PEM Ed25519 private key"),
    (str(KEYS / "test_a.pem"), "is not a PEM Ed25519 private key"),  # an RSA key in the Ed25519 slot
])
def test_a_bad_ed25519_key_is_one_line_naming_it(tmp_path, db_url, key, expected):
    (tmp_path / "garbage.pem").write_text("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
    cfg = write_config(tmp_path, db_url, "[smtp]\n" + _dkim_toml(KEYS / "test_a.pem") + f'dkim_ed25519_key_file = "{key}"\n')
    with pytest.raises(ConfigError, match="dkim_ed25519_key_file"):
        dkim_signing.signer(load_settings(cfg, environ={}))
    r = CliRunner(cfg)("config", "dkim")
    assert r.exit_code != 0 and expected in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Traceback" not in r.output


def test_an_ed25519_key_without_the_rsa_setup_is_refused(tmp_path, db_url):
    cfg = write_config(tmp_path, db_url, f'[smtp]\ndkim_ed25519_key_file = "{KEYS / "test_ed25519.pem"}"\n')
    with pytest.raises(ConfigError, match="dkim_ed25519_key_file"):
        dkim_signing.signer(load_settings(cfg, environ={}))


def test_a_sender_killed_outright_leaves_no_signing_process_behind(tmp_path):
    """SIGKILL gives the sender no chance to close its pool: the signing process sees its
    input end and exits by itself."""
    import os
    import signal
    import sys

    script = tmp_path / "sender.py"
    script.write_text(
        "import asyncio, sys, time\n"
        "from campaigns.messages.dkim_signing import DkimSigner\n"
        "from scheduler.dkim_pool import DkimPool\n"
        f"pool = DkimPool(DkimSigner(b'example.com', b'mail2026', open({str(KEYS / 'test_a.pem')!r}, 'rb').read()))\n"
        "async def go():\n"
        "    await pool.sign_all([b'From: a@example.com\\r\\nSubject: x\\r\\n\\r\\nhi\\r\\n'])[0]\n"
        "    print(pool._children[0].proc.pid, flush=True)\n"
        "    time.sleep(60)\n"
        "asyncio.run(go())\n", encoding="utf-8")
    sender = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parents[2])
    try:
        assert sender.stdout is not None
        child = int(sender.stdout.readline())
        sender.send_signal(signal.SIGKILL)
        sender.wait(timeout=10)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                break
            state = Path(f"/proc/{child}/stat").read_text().split()[2] if Path(f"/proc/{child}/stat").exists() else "gone"
            if state in ("Z", "gone"):  # exited; its parent is gone, so init reaps it
                break
            time.sleep(0.1)
        else:
            os.kill(child, signal.SIGKILL)
            raise AssertionError("the signing process outlived its sender")
    finally:
        if sender.poll() is None:
            sender.kill()
