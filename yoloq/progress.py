"""A one-line progress bar for jobs, on a terminal or in a log."""

from __future__ import annotations

import sys
from typing import TextIO

from yoloq.schemas import JobEvent, JobPublic


class JobProgress:
    """Redraws in place on a terminal; elsewhere prints a line only when progress changes."""

    def __init__(self, stream: TextIO = sys.stderr, width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self.tty = stream.isatty()
        self._last: tuple[int, str] | None = None

    def __call__(self, job: JobEvent | JobPublic) -> None:
        state = (job.done, job.status.value)
        if state == self._last:
            return
        self._last = state
        filled = self.width * job.done // max(1, job.total)
        bar = "#" * filled + "." * (self.width - filled)
        line = f"[{bar}] {job.done}/{job.total} images, {job.failed} failed, {job.status.value}"
        if self.tty:
            end = "\n" if job.status.is_final else ""
            self.stream.write(f"\r{line}{end}")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
