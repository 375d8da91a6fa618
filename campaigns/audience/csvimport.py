"""Streaming imports: CSV reading with line numbers, rejects, and the one loop every importer runs.

Shared by contacts, purchases and custom events: rows stream from disk (the file is never
held in memory), each with the physical line it ended on, and a bad encoding is one clear
error naming the line. `run_import` is the loop itself (read, validate, collect rejects or
fail, write chunk by chunk); an importer supplies a row validator and a chunk writer.
"""

from __future__ import annotations

import csv
import io
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

from campaigns import csv_output, safe_files
from campaigns.csv_output import unneutralise
from campaigns.errors import ImportFailed, InputError, RowError

Progress = Callable[[int], None]  # called with the bytes read so far
CHUNK = 1000  # rows validated, then written, at a time
# A file at least this large is validated in a second process while this one writes (see
# `_validated`); below it the process start is not worth it.
PARALLEL_MIN_BYTES = 1 << 20


class RowSource(Protocol):
    """What an import reads: (line, row) pairs, and the header the rejects file repeats."""

    path: Path
    header: list[str]

    def rows(self) -> Iterator[tuple[int, dict[str, Any]]]: ...


class _CountingReader(io.RawIOBase):
    """Wraps a binary file and reports how many bytes were consumed."""

    def __init__(self, raw: IO[bytes], progress: Progress | None) -> None:
        self._raw = raw
        self._progress = progress
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.consumed += n
        if self._progress is not None:
            self._progress(self.consumed)
        return n


@dataclass
class CsvSource:
    """A CSV file opened for streaming, with its header checked."""

    path: Path
    encoding: str = "utf-8"
    required_any: tuple[str, ...] = ()
    progress: Progress | None = None
    header: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        """File size in bytes (for progress bars)."""
        return self.path.stat().st_size

    def rows(self) -> Iterator[tuple[int, dict[str, str]]]:
        """(line number, {column: stripped value}) for each data row."""
        if not self.path.exists():
            raise InputError(f"{self.path}: no such file")
        if not self.path.is_file():
            raise InputError(f"{self.path}: not a file")
        encoding = "utf-8-sig" if self.encoding.lower().replace("_", "-") in ("utf-8", "utf8") else self.encoding
        try:
            "".encode(encoding)
        except LookupError:
            raise InputError(f"--encoding: '{self.encoding}' is not a known text encoding") from None
        with open(self.path, "rb") as raw:
            counted = _CountingReader(raw, self.progress)
            text = io.TextIOWrapper(io.BufferedReader(counted, 1 << 16), encoding=encoding, newline="")
            reader = csv.reader(text)
            try:
                try:
                    header = next(reader)
                except StopIteration:
                    raise InputError(f"{self.path}: the file is empty (expected a header row)") from None
                self.header = [h.strip().lower() for h in header]
                self._check_header()
                width = len(self.header)
                for record in reader:
                    line = reader.line_num
                    if not record or (len(record) == 1 and not record[0].strip()):
                        continue  # blank line
                    if len(record) != width:
                        yield line, {"__error__": f"has {len(record)} fields, the header has {width}"}
                        continue
                    if any("\x00" in v for v in record):  # PostgreSQL text cannot hold it; nobody types it
                        yield line, {"__error__": "contains a NUL character (0x00)"}
                        continue
                    yield line, {k: unneutralise(v.strip()) for k, v in zip(self.header, record, strict=True) if k}
            except UnicodeDecodeError:
                line, byte = _locate_decode_error(self.path, encoding)
                raise InputError(
                    f"{self.path}: line {line}: not valid {self.encoding} text "
                    f"(byte 0x{byte:02x}); save the file as UTF-8 or pass --encoding"
                ) from None
            except csv.Error as exc:
                raise InputError(f"{self.path}: line {reader.line_num}: malformed CSV: {exc}") from None

    def _check_header(self) -> None:
        seen: set[str] = set()
        for name in self.header:
            if name and name in seen:
                raise InputError(f"{self.path}: line 1: column '{name}' appears twice")
            seen.add(name)
        if self.required_any and not seen.intersection(self.required_any):
            raise InputError(
                f"{self.path}: line 1: the header needs at least one of the columns {', '.join(self.required_any)}"
            )


def _locate_decode_error(path: Path, encoding: str) -> tuple[int, int]:
    """(line, byte) of the first undecodable byte: decoding runs ahead of the CSV reader."""
    import codecs

    decoder = codecs.getincrementaldecoder(encoding)()
    line = 1
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 16):
            for i in range(0, len(chunk), 4096):
                piece = chunk[i:i + 4096]
                try:
                    decoder.decode(piece)
                except UnicodeDecodeError as exc:
                    bad = max(0, exc.start - len(exc.object) + len(piece))
                    return line + piece[:bad].count(b"\n"), piece[bad] if bad < len(piece) else 0
                line += piece.count(b"\n")
    return line, 0


class RejectWriter:
    """Writes rejected rows with their line and reason to a CSV beside the input.

    The file is private (0600: the rows hold personal data), written to a temporary file
    and renamed into place (never through a symlink), and an existing one is replaced
    only with `force`."""

    def __init__(self, source: Path, force: bool = False) -> None:
        self.path = source.with_name(source.stem + ".rejected.csv")
        safe_files.check_replace(self.path, force)
        self._fh: IO[str] | None = None
        self._tmp: str | None = None
        self._writer: Any = None
        self.count = 0

    def write(self, header: list[str], line: int, row: dict[str, str], error: RowError) -> None:
        """Record one rejected row."""
        if self._writer is None:
            self._fh, self._tmp = safe_files.open_temp_beside(self.path)
            self._writer = csv_output.writer(self._fh)
            self._writer.writerow(["line", "field", "error", *[h for h in header if h]])
        self._writer.writerow([line, error.field or "", error.reason, *[row.get(h, "") for h in header if h]])
        self.count += 1

    def close(self, completed: bool = True) -> None:
        """Flush and move into place; removes a stale rejects file when nothing was rejected.
        An import that did not complete (an error, Ctrl-C) imported nothing: its partial list
        is deleted and an earlier rejects file left as it was."""
        if self._fh is not None and self._tmp is not None:
            self._fh.close()
            if completed:
                os.replace(self._tmp, self.path)
            else:
                os.unlink(self._tmp)
        elif completed and os.path.lexists(self.path):
            os.unlink(self.path)


@dataclass
class ImportResult:
    """What an import did (contacts, purchases, coupons alike)."""

    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    consent_events: int = 0
    consent_requests: int = 0  # double opt-in requests queued (pending entries)
    rejects_path: Path | None = None


class Rejections:
    """Collects row errors; with skip_invalid they go to the rejects file, else they fail the import."""

    def __init__(self, source: RowSource, skip_invalid: bool, force: bool = False) -> None:
        self.source = source
        self.errors: list[RowError] = []
        self._writer = RejectWriter(source.path, force) if skip_invalid else None

    @property
    def keeps_rows(self) -> bool:
        """Whether a rejected row's values are written (to the rejects file)."""
        return self._writer is not None

    def reject(self, error: RowError, row: dict[str, str] | None = None) -> None:
        """Record one bad row."""
        self.errors.append(error)
        if self._writer is not None:
            self._writer.write(self.source.header, error.line, row or {}, error)

    def close(self, completed: bool = True) -> None:
        """Close the rejects file (call in a finally; `completed`: every row was read and written)."""
        if self._writer is not None:
            self._writer.close(completed)

    def finish(self, result: ImportResult) -> ImportResult:
        """Raise ImportFailed listing every bad row, unless they were skipped; fill the counts."""
        if self.errors and self._writer is None:
            raise ImportFailed(str(self.source.path), sorted(self.errors, key=lambda e: e.line), result.rows)
        result.rejected = len(self.errors)
        result.rejects_path = self._writer.path if self._writer and self._writer.count else None
        return result


class Item(Protocol):
    """A validated row: it knows the line it came from."""

    line: int


T = TypeVar("T", bound=Item)
Reject = Callable[[RowError], None]  # a writer's way to refuse a row of its chunk (by the error's line)
Validate = Callable[[dict[str, Any], int], T]  # (row, line) -> item, or RowError
WriteChunk = Callable[[list[T], ImportResult, Reject], None]  # writes a chunk, counts into the result


def run_import(source: RowSource, rejections: Rejections, validate: Validate[T], write: WriteChunk[T], *,
               keys: Callable[[T], set[str]] | None = None, chunk_size: int = CHUNK,
               pure: bool = False) -> ImportResult:
    """The one streaming loop of every import: read each row with its line, validate it, collect
    the bad ones (to the rejects file with --skip-invalid, else they fail the import at the end),
    and hand the good ones to `write` chunk_size at a time.

    `keys` (optional) names what an item matches existing rows by: an item sharing a key with
    one already in the chunk starts a new chunk, so a writer never sees two rows for the same
    record at once. Rejects from the writer carry their original row. Closes the rejects file
    and returns the result counted (ImportFailed listing every bad row, unless skipped).

    `pure`: `validate` reads nothing but its arguments and the settings (no database, no
    files), so a large file may be validated in a second process (`_validated`)."""
    result = ImportResult()
    chunk: list[T] = []
    raw: dict[int, dict[str, Any]] = {}
    held: set[str] = set()

    def reject(error: RowError) -> None:
        rejections.reject(error, _as_text(raw.get(error.line, {})))

    def flush() -> None:
        if chunk:
            write(chunk, result, reject)
        chunk.clear()
        raw.clear()
        held.clear()

    validated = _validated(source, validate, pure, chunk_size, keep_rows=rejections.keeps_rows)
    completed = False
    try:
        for line, row, item in validated:
            result.rows += 1
            if isinstance(item, RowError):
                rejections.reject(item, _as_text(row))
                continue
            item_keys = keys(item) if keys is not None else None
            if len(chunk) >= chunk_size or (item_keys and not held.isdisjoint(item_keys)):
                flush()
            chunk.append(item)
            raw[line] = row
            if item_keys:
                held.update(item_keys)
        flush()
        completed = True
    finally:
        validated.close()  # a failed write stops the worker now, not when the generator is collected
        rejections.close(completed)
    return rejections.finish(result)


def _as_text(row: dict[str, Any]) -> dict[str, str]:
    """A row as the rejects file writes it (a JSON line's values become text)."""
    return {k: v if isinstance(v, str) else str(v) for k, v in row.items()}


def _validated(source: RowSource, validate: Validate[T], pure: bool, block: int,
               keep_rows: bool = True) -> Generator[tuple[int, dict[str, Any], T | RowError], None, None]:
    """Each row with its line and what `validate` made of it (the item, or its RowError), in
    file order.

    For a `pure` validator and a file of PARALLEL_MIN_BYTES or more, one forked worker
    process reads the file and validates it, sending blocks of results down a pipe while
    this process writes the blocks before (contacts: reading, phone numbers' parse and
    validation and the addresses' HMACs are about half of an import). The results are the
    same as here, in the same order. `keep_rows`: the raw rows come back too (the rejects
    file repeats them); without it a row is yielded as {}. The pipe holds up to PIPE_BYTES
    (several blocks), so the worker runs a few blocks ahead at most (bounded memory) and
    neither process waits for the other's every block. If the worker cannot
    be started or dies, this process reads on from the first row it did not receive. Only
    where fork is safe (`_can_fork`): a fork copies locks other threads may hold, so this
    process must run one thread."""
    if not (pure and _can_fork() and _size(source) >= PARALLEL_MIN_BYTES):
        for line, row in source.rows():
            yield line, row, _validate_one(validate, row, line)
        return
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    _widen(send)
    worker = context.Process(target=_read_and_validate, args=(source, validate, block, keep_rows, send), daemon=True)
    progress: Progress | None = getattr(source, "progress", None)
    received = 0
    try:
        worker.start()
        send.close()  # this end is the worker's: its exit then reads as the pipe's end here
        while True:
            try:
                kind, header, consumed, payload = receive.recv()
            except (EOFError, OSError):  # the worker died (killed, out of memory)
                break
            source.header = header
            if kind == "end":
                return
            if progress is not None:
                progress(consumed)
            for line, row, outcome in payload:
                received += 1
                yield line, row if row is not None else {}, RowError(*outcome) if isinstance(outcome, tuple) else outcome
    except OSError:  # the worker could not be started: everything is read here
        pass
    finally:
        receive.close()
        if worker.is_alive():
            worker.kill()
        if worker.pid is not None:
            worker.join()
    for number, (line, row) in enumerate(source.rows()):
        if number >= received:
            yield line, row, _validate_one(validate, row, line)


PIPE_BYTES = 1 << 20  # Linux's largest pipe for an unprivileged process, by default


def _widen(end: Any) -> None:
    """Let the worker's pipe hold several blocks (Linux: a pipe holds 64 kB, less than one
    block of results, so the worker could only ever be one block ahead and the two processes
    waited on each other in turns); elsewhere, or if refused, the pipe stays as it is."""
    try:
        import fcntl

        fcntl.fcntl(end.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (ImportError, AttributeError, OSError):
        pass


def _validate_one(validate: Validate[T], row: dict[str, Any], line: int) -> T | RowError:
    try:
        return validate(row, line)
    except RowError as err:
        return err


def _read_and_validate(source: RowSource, validate: Validate[Any], block: int, keep_rows: bool, send: Any) -> None:
    """The worker: read the source, validate each row, and send blocks of (line, row or None,
    item or RowError as (line, field, reason): an exception with its own constructor does not
    pickle) with the header and the bytes read so far, then ("end", ...). When reading fails
    (bad encoding, malformed CSV) it sends the rows before and stops: the parent reads on
    from there and meets the same error, raised where reading in one process raises it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent stops this one
    consumed = [0]

    def note(n: int) -> None:
        consumed[0] = n

    if getattr(source, "progress", None) is not None:  # the bar is drawn by the parent, from the counts sent
        source.progress = note  # type: ignore[attr-defined]
    out: list[tuple[int, dict[str, Any] | None, Any]] = []
    try:
        for line, row in source.rows():
            outcome = _validate_one(validate, row, line)
            out.append((line, row if keep_rows else None,
                        (outcome.line, outcome.field, outcome.reason) if isinstance(outcome, RowError) else outcome))
            if len(out) == block:
                send.send(("block", source.header, consumed[0], out))
                out = []
        if out:
            send.send(("block", source.header, consumed[0], out))
        send.send(("end", source.header, consumed[0], None))
    except OSError:  # the parent stopped reading (its write failed, it closed the pipe)
        pass
    except Exception:  # the parent reads on from here and meets it itself
        try:
            if out:
                send.send(("block", source.header, consumed[0], out))
        except OSError:
            pass
    finally:
        send.close()


def _can_fork() -> bool:
    """Fork is offered (POSIX), the platform's libraries tolerate it (not macOS, whose system
    frameworks may crash a forked child) and this process runs one thread."""
    return (sys.platform != "darwin" and "fork" in multiprocessing.get_all_start_methods()
            and threading.active_count() == 1)


def _size(source: RowSource) -> int:
    try:
        return source.path.stat().st_size
    except OSError:  # missing: rows() says so in its own words
        return 0
