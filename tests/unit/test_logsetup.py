"""Daemon and worker logs: one line per condition, no addresses, no SQL parameters."""

from __future__ import annotations

import io
import logging

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError

from campaigns.logsetup import configure


@pytest.fixture
def driver_error() -> IntegrityError:
    """A real driver error whose statement carries a contact's address as a parameter."""
    engine = create_engine("sqlite://")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE contact (email TEXT UNIQUE)"))
        conn.execute(text("INSERT INTO contact VALUES (:e)"), {"e": "ann.smith@example.com"})
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO contact VALUES (:e)"), {"e": "ann.smith@example.com"})
    except IntegrityError as exc:
        assert "ann.smith@example.com" in str(exc)  # what SQLAlchemy puts in the message
        return exc
    raise AssertionError("no error")


@pytest.fixture
def logs():
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    out = io.StringIO()
    yield out
    root.handlers[:], _ = saved[0], root.setLevel(saved[1])


def test_a_driver_error_is_one_line_without_sql_or_addresses(logs, driver_error):
    configure(verbose=False, stream=logs)
    log = logging.getLogger("campaigns.daemon")
    try:
        raise driver_error
    except IntegrityError:
        log.exception("planning campaign promo failed")
    log.warning("refused message to bob@example.org, +14155550100")
    lines = logs.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert "planning campaign promo failed: IntegrityError:" in lines[0] and "UNIQUE constraint failed" in lines[0]
    text_ = logs.getvalue()
    for leak in ("@example.com", "@example.org", "+14155550100", "[SQL", "parameters", "Traceback"):
        assert leak not in text_, text_


def test_verbose_shows_the_traceback_still_without_addresses(logs, driver_error):
    configure(verbose=True, stream=logs)
    try:
        raise driver_error
    except IntegrityError:
        logging.getLogger("campaigns.daemon").exception("planning failed")
    assert "Traceback" in logs.getvalue()
    assert "@example.com" not in logs.getvalue() and "[parameters" not in logs.getvalue()


def test_a_repeated_condition_is_printed_once_a_minute(logs):
    configure(verbose=False, stream=logs)
    log = logging.getLogger("campaigns.dispatcher")
    for second in range(30):
        log.warning("database down for %d s: connection refused", second * 10)
    log.warning("campaign #3 auto-paused")
    log.warning("campaign #4 auto-paused")
    log.info("dispatched 16")
    log.info("dispatched 16")
    lines = logs.getvalue().splitlines()
    assert sum("database down" in line for line in lines) == 1
    assert sum("auto-paused" in line for line in lines) == 2  # two campaigns, two conditions
    assert sum("dispatched" in line for line in lines) == 2  # progress lines are never held back
