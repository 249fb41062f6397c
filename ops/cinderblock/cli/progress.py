"""A progress bar on stderr: redrawn in place on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    minutes, s = divmod(seconds, 60)
    return f"{minutes}m{s:02d}s" if minutes else f"{s}s"


class Bar:
    def __init__(
        self,
        label: str,
        *,
        stream: TextIO | None = None,
        tty: bool | None = None,
        width: int = 30,
        every: float | None = None,
    ) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.width = width
        self.every = every if every is not None else (0.1 if self.tty else 2.0)
        self.started = time.perf_counter()
        self._last = 0.0
        self._drawn = False

    def line(self, done: int, total: int) -> str:
        elapsed = time.perf_counter() - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        total = max(total, done, 1)
        eta = (total - done) / rate if rate > 0 else 0.0
        filled = int(self.width * done / total)
        bar = "#" * filled + "-" * (self.width - filled)
        return (
            f"{self.label} [{bar}] {100 * done / total:5.1f}% {done:,}/{total:,} events "
            f"{rate:,.0f} events/s ETA {_duration(eta)}"
        )

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if now - self._last < self.every and done < total:
            return
        self._last = now
        if self.tty:
            self.stream.write("\r" + self.line(done, total) + "\x1b[K")
        else:
            self.stream.write(self.line(done, total) + "\n")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
