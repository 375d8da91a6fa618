"""A large import is validated in a forked worker while the main process writes: the same
rows, the same order, the same rejects as validating in one process; a dead worker costs
nothing but time; no worker where fork is unsafe (another thread)."""

import os
import threading
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from bench.datagen import write_contacts_csv
from campaigns.audience import contacts, csvimport
from campaigns.audience.csvimport import CsvSource, Rejections, run_import
from campaigns.errors import InputError, RowError
from campaigns.store.models import ConsentEvent, Contact

MAIN = os.getpid()


@pytest.fixture
def forking(monkeypatch):
    """The worker used for any size of file. Fork is allowed here even if an earlier test in
    this process left a thread (the render watchdog stays for the process's life): what is
    tested is what the worker does; when the product forks is tested on its own below."""
    monkeypatch.setattr(csvimport, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(csvimport, "_can_fork", lambda: True)


def _file(tmp_path, n=2500):
    path = tmp_path / "rows.csv"
    path.write_text("v\n" + "".join(f"{'bad' if i % 97 == 5 else i}\n" for i in range(n)), encoding="utf-8")
    return path


def _validate(row, line):
    if row["v"] == "bad":
        raise RowError(line, "v", "is bad")
    return SimpleNamespace(line=line, value=int(row["v"]), pid=os.getpid())


def _run(path, pure, validate=_validate):
    written = []
    source = CsvSource(path)  # one source, as an importer has: the rejects file repeats its header
    rejections = Rejections(source, skip_invalid=True, force=True)
    result = run_import(source, rejections, validate, lambda chunk, result, reject: written.extend(chunk), pure=pure)
    rejects = result.rejects_path.read_text(encoding="utf-8").splitlines()
    assert rejects[0] == "line,field,error,v" and len(rejects) == 1 + result.rejected
    return result, written, [(e.line, e.field, e.reason) for e in rejections.errors]


def test_a_large_file_is_validated_by_a_worker_with_the_same_outcome(tmp_path, forking):
    path = _file(tmp_path)
    serial = _run(path, pure=False)
    parallel = _run(path, pure=True)
    assert {item.pid for item in serial[1]} == {MAIN}
    assert MAIN not in {item.pid for item in parallel[1]}  # validated in the worker ...
    assert [(i.line, i.value) for i in parallel[1]] == [(i.line, i.value) for i in serial[1]]  # ... in file order
    assert parallel[2] == serial[2] and len(serial[2]) == 26 and serial[2][0] == (7, "v", "is bad")
    assert (parallel[0].rows, parallel[0].rejected) == (serial[0].rows, serial[0].rejected) == (2500, 26)


def test_a_worker_that_dies_leaves_the_rest_to_the_main_process(tmp_path, forking):
    def dies_at_line_1500(row, line):
        if os.getpid() != MAIN and line == 1500:
            os._exit(3)  # killed mid-block (out of memory, a signal)
        return _validate(row, line)

    result, written, rejected = _run(_file(tmp_path), pure=True, validate=dies_at_line_1500)
    assert [i.value for i in written] == [i for i in range(2500) if i % 97 != 5]
    assert {i.pid for i in written if i.line >= 1500} == {MAIN}
    assert len(rejected) == 26 and result.rows == 2500


def test_no_worker_is_forked_while_another_thread_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(csvimport, "PARALLEL_MIN_BYTES", 0)
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        _result, written, _rejected = _run(_file(tmp_path, 300), pure=True)
    finally:
        release.set()
        other.join()
    assert {i.pid for i in written} == {MAIN}


def test_a_validator_not_marked_pure_is_never_moved(tmp_path, forking):
    _result, written, _rejected = _run(_file(tmp_path, 300), pure=False)
    assert {i.pid for i in written} == {MAIN}


def _snapshot(app):
    with app.session() as s:
        people = [(c.external_id, c.email, c.phone, c.timezone, c.email_hash, c.phone_hash, c.attributes)
                  for c in s.scalars(select(Contact).order_by(Contact.external_id))]
        grants = sorted((c, ch, a) for c, ch, a in s.execute(
            select(Contact.external_id, ConsentEvent.channel, ConsentEvent.action).join(Contact)))
    return people, grants


def test_contacts_import_through_the_worker_stores_what_one_process_would(app, tmp_path, monkeypatch, forking):
    """3,000 rows, one in 50 bad: imported with the worker, then the same file again in one
    process changes nothing, and both runs reject the same lines for the same reasons."""
    path = write_contacts_csv(tmp_path / "contacts.csv", 3000, invalid_every=50)
    pids = tmp_path / "pids"
    parse = contacts.parse_row

    def parse_noting_the_process(row, line, settings):
        with open(pids, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        return parse(row, line, settings)

    monkeypatch.setattr(contacts, "parse_row", parse_noting_the_process)
    with app.session() as s:
        first = contacts.import_contacts(s, app.settings, path, consent_channels=["email"], source="test", skip_invalid=True)
    assert set(pids.read_text().split()) - {str(MAIN)} and len(pids.read_text().split()) == 3000  # the worker parsed them
    rejects_first = first.rejects_path.read_text(encoding="utf-8")
    stored = _snapshot(app)
    monkeypatch.setattr(csvimport, "PARALLEL_MIN_BYTES", 1 << 60)
    with app.session() as s:
        again = contacts.import_contacts(s, app.settings, path, consent_channels=["email"], source="test",
                                         skip_invalid=True, force=True)
    assert (first.created, first.rejected, first.consent_events) == (2940, 60, 2940)
    assert (again.created, again.updated, again.unchanged, again.consent_events) == (0, 0, 2940, 0)
    assert again.rejects_path.read_text(encoding="utf-8") == rejects_first
    assert _snapshot(app) == stored
    assert len(stored[0]) == 2940 and all(phone.startswith("+1") for _x, _e, phone, *_ in stored[0])


def test_the_import_progress_bar_runs_no_thread(cli, tmp_path, monkeypatch):
    """rich's bar refreshes from a thread of its own by default; the import's is redrawn from
    the import's callback, so a one-thread CLI stays fork-safe and the worker can be used."""
    seen = []
    can_fork = csvimport._can_fork
    monkeypatch.setattr(csvimport, "_can_fork", lambda: seen.append(threading.active_count()) or can_fork())
    monkeypatch.setattr(csvimport, "PARALLEL_MIN_BYTES", 0)
    before = threading.active_count()  # 1 in a fresh process; an earlier test may have left one
    r = cli("contacts", "import", str(write_contacts_csv(tmp_path / "contacts.csv", 3)))
    assert r.exit_code == 0, r.output
    assert seen == [before]


def test_a_one_thread_process_forks_the_worker(tmp_path):
    """The product's own decision, in a fresh interpreter (this one may hold threads that
    earlier tests left): one thread and a large file, the worker validates."""
    import subprocess
    import sys

    path = _file(tmp_path, 30_000)  # about 160 kB; the bar is lowered to 100 kB
    code = ("import os, sys, threading; from types import SimpleNamespace; "
            "from campaigns.audience import csvimport as c; c.PARALLEL_MIN_BYTES = 100_000; "
            "seen = []; v = lambda row, line: SimpleNamespace(line=line, pid=os.getpid()); "
            "src = c.CsvSource(c.Path(sys.argv[1])); c.run_import(src, c.Rejections(src, False), v, "
            "lambda chunk, r, reject: seen.extend(i.pid for i in chunk), pure=True); "
            "print(threading.active_count(), len(seen), os.getpid() in seen)")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "30000", "False"]


def test_the_worker_reads_the_file_and_the_parent_draws_the_progress(tmp_path, forking):
    """The main process neither parses the CSV nor validates it; it still hears how far the
    worker has read, ending at the file's size, and the rejects file still repeats each row."""
    path = _file(tmp_path, 5000)
    readers, seen = tmp_path / "readers", []
    rows = CsvSource.rows

    def reading(self):
        with open(readers, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        return rows(self)

    source = CsvSource(path, progress=lambda n: seen.append((os.getpid(), n)))
    rejections = Rejections(source, skip_invalid=True, force=True)
    try:
        csvimport.CsvSource.rows = reading
        result = run_import(source, rejections, _validate, lambda chunk, result, reject: None, pure=True)
    finally:
        csvimport.CsvSource.rows = rows
    assert str(MAIN) not in readers.read_text().split() and len(readers.read_text().split()) == 1
    assert {pid for pid, _n in seen} == {MAIN} and [n for _pid, n in seen] == sorted(n for _pid, n in seen)
    assert seen[-1][1] == path.stat().st_size and len(seen) >= 5  # one a block
    lines = result.rejects_path.read_text(encoding="utf-8").splitlines()
    assert lines[1] == "7,v,is bad,bad" and len(lines) == 1 + 52


def test_a_file_that_goes_bad_midway_fails_as_in_one_process(tmp_path, forking):
    """A field over the csv module's limit and a bad byte after 3,000 good rows: the same one-line error, naming the
    line, with the worker reading as without it."""
    good = "".join(f"{i}\n" for i in range(3000))
    for tail, expected in ((b"x" * 200_000 + b"\n", "malformed CSV"), (b"\xff\xfe\n", "not valid utf-8 text")):
        path = tmp_path / "bad.csv"
        path.write_bytes(b"v\n" + good.encode() + b"1\n" + tail)
        messages = []
        for pure in (False, True):
            source = CsvSource(path)
            with pytest.raises(InputError) as caught:
                run_import(source, Rejections(source, skip_invalid=False), _validate,
                           lambda chunk, result, reject: None, pure=pure)
            messages.append(str(caught.value))
        assert messages[0] == messages[1] and expected in messages[0] and "line 3003:" in messages[0], messages
