"""Reliability scenarios record their figures; `python -m tests.reliability.publish` writes RELIABILITY.md."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

RESULTS = Path(os.environ.get("CAMPAIGNS_RELIABILITY_RESULTS", Path(__file__).parent / "results.json"))


def pytest_collection_modifyitems(items):  # type: ignore[no-untyped-def]
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.reliability)


@pytest.fixture
def record():
    """record(scenario, command, **figures): keep this run's figures for RELIABILITY.md."""

    def _record(scenario: str, command: str, **figures: object) -> None:
        data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        data[scenario] = {"command": command, "recorded_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                          **figures}
        RESULTS.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")

    return _record
