"""gc_paused holds off cyclic collection inside and leaves the collector as it found it."""

from __future__ import annotations

import gc

import pytest

from scheduler.gcpause import gc_paused


@pytest.mark.parametrize("was_on", [True, False])
def test_the_collector_is_off_inside_and_as_it_was_after(was_on):
    (gc.enable if was_on else gc.disable)()
    try:
        with pytest.raises(RuntimeError), gc_paused():
            assert not gc.isenabled()
            raise RuntimeError
        assert gc.isenabled() is was_on
    finally:
        gc.enable()
