"""Progress of a long loop: a tqdm bar on a terminal, plain timed lines elsewhere (SLURM logs, CI, `> file`)."""

from __future__ import annotations

import math
import sys
import time
from typing import Any, TextIO


class Progress:
    """`with Progress(5000, "train act") as bar: bar.update(1, loss=0.12)`.

    On a TTY this is a tqdm bar. Without one it writes one line every `log_every_s` seconds and one at close, e.g.
    `train act: 1200/5000 steps (24%) 35.2 steps/s loss=0.12 eta 1m48s`, and never a carriage return, so a
    captured log stays one readable line per report instead of megabytes of redrawn frames.
    """

    def __init__(self, total: int | None, desc: str, unit: str = "step", enabled: bool = True,
                 log_every_s: float = 30.0, stream: TextIO | None = None, initial: int = 0) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.enabled = enabled
        self.log_every_s = float(log_every_s)
        self.stream = sys.stderr if stream is None else stream
        self.count = self.initial = int(initial)
        self.postfix: dict[str, Any] = {}
        self._bar = None
        self._closed = not enabled
        self._start = self._last_line = time.monotonic()
        self._lines_since_update = 0
        self._wrote_line = False
        if enabled and is_terminal(self.stream):
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=self.initial, desc=desc, unit=unit, file=self.stream,
                             dynamic_ncols=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1, **postfix: Any) -> None:
        """Advance by n units; keyword values (loss=0.12) are shown after the rate from now on."""
        if self._closed:
            return
        self.count += n
        if postfix:
            self.postfix.update(postfix)
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix({k: _format(v) for k, v in self.postfix.items()}, refresh=False)
            self._bar.update(n)
            return
        self._lines_since_update += n
        if time.monotonic() - self._last_line >= self.log_every_s:
            self._write_line()

    def write(self, message: str) -> None:
        """A message on its own line (above the bar on a terminal)."""
        if self._bar is not None:
            self._bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self._lines_since_update or not self._wrote_line:
            self._write_line()

    def line(self) -> str:
        """The plain report of the current state (what a non-TTY stream receives)."""
        elapsed = max(time.monotonic() - self._start, 1e-9)
        done = self.count - self.initial
        rate = done / elapsed
        units = self.unit if self.unit.endswith("s") else f"{self.unit}s"
        parts = [f"{self.desc}: {self.count}"]
        if self.total:
            parts[0] += f"/{self.total} {units} ({100 * self.count / self.total:.0f}%)"
        else:
            parts[0] += f" {units}"
        parts.append(f"{rate:.3g} {units}/s" if rate < 100 else f"{rate:.0f} {units}/s")
        parts += [f"{k}={_format(v)}" for k, v in self.postfix.items()]
        if self.total and rate > 0 and self.count < self.total:
            parts.append(f"eta {_duration((self.total - self.count) / rate)}")
        return " ".join(parts)

    def _write_line(self) -> None:
        print(self.line(), file=self.stream, flush=True)
        self._last_line = time.monotonic()
        self._lines_since_update = 0
        self._wrote_line = True


def is_terminal(stream: TextIO) -> bool:
    """Whether a progress bar can redraw itself in place on `stream`."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or file-like objects without isatty
        return False


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
