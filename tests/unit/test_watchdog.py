"""The hard time limit's watchdog, with a recorder in place of exiting the process."""

from __future__ import annotations

import threading
import time

from workers.watchdog import Watchdog


def test_a_chunk_past_the_hard_limit_is_reported_and_a_quick_one_is_not() -> None:
    reported: list[list[str]] = []
    fired = threading.Event()

    def on_overdue(names: list[str]) -> None:
        reported.append(names)
        fired.set()

    watchdog = Watchdog(hard_limit_s=0.3, on_overdue=on_overdue, check_every_s=0.05).start()
    try:
        with watchdog.running("quick"):
            pass
        with watchdog.running("stuck"):
            assert fired.wait(5)
        assert reported[0] == ["stuck"]
        assert watchdog.overdue() == []
    finally:
        watchdog.stop()


def test_nothing_is_overdue_within_the_limit() -> None:
    watchdog = Watchdog(hard_limit_s=60, on_overdue=lambda names: None)
    with watchdog.running("a"), watchdog.running("a"):
        time.sleep(0.01)
        assert watchdog.overdue() == []
