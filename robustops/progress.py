"""Progress reports that also reach logs: a tqdm bar on a terminal, plain lines elsewhere.

tqdm turns itself off when its stream is not a terminal (``disable=None``), so a run under
nohup, SLURM or CI logged nothing for minutes. ``progress()`` keeps the bar on a terminal
and otherwise prints a line at most every ``ROBUSTOPS_PROGRESS_SECONDS`` (default 10 s),
shared by all reports of the process, so a log is never silent longer than that while
anything reports progress (and consecutive short loops do not each print):

    train epoch 2/5: 340/1000 steps, 12.3 step/s, eta 54 s (loss 0.412, acc 0.871)

A report that printed a line ends with one more when it closes:

    train epoch 2/5: 1000/1000 steps in 81 s, 12.3 step/s

    bar = progress(total=len(loader), desc="train epoch 1/5", unit="step")
    for x, y in loader:
        ...
        bar.update(1)
        bar.set_postfix({"loss": f"{loss:.3f}"})
    bar.close()
    for case in progress(cases, desc="cases", unit="case"):  # or wrap an iterable
        ...

``ROBUSTOPS_PROGRESS=0`` turns both off; ``enabled=False`` turns off one report.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Callable, Iterable, Iterator, Optional, TextIO

DEFAULT_SECONDS = 10.0

# Since when the log has been quiet: the time (of the reports' clock) when a plain report
# last printed a line, or when the first one started. Shared, so the interval is shared.
_quiet_since: Optional[float] = None


def interval_seconds() -> float:
    """Seconds between plain lines: ROBUSTOPS_PROGRESS_SECONDS (>= 0), default 10."""
    raw = os.environ.get("ROBUSTOPS_PROGRESS_SECONDS", "").strip()
    if not raw:
        return DEFAULT_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also NaN
        raise ValueError(f"ROBUSTOPS_PROGRESS_SECONDS must be a number of seconds >= 0, "
                         f"got {raw!r}")
    return value


def _plural(unit: str) -> str:
    return unit if unit.endswith("s") or unit == "it" else unit + "s"


def _rate(done: int, elapsed: float, unit: str) -> str:
    """'12.3 step/s' (three significant digits, no exponent)."""
    r = done / elapsed if elapsed > 0 else 0.0
    return f"{r:.3g} {unit}/s" if r < 1000 else f"{r:.0f} {unit}/s"


def _seconds(s: float) -> str:
    """'54 s', '12 min 3 s', '2 h 5 min': an ETA or a duration, to the second."""
    s = int(round(s))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


class LineProgress:
    """tqdm's update / set_postfix / close / iteration, reported as plain lines on `file`
    (at most one per `interval` seconds across all reports; see the module docstring).

    clock: a monotonic clock (tests pass a fake one).
    """

    def __init__(self, iterable: Optional[Iterable] = None, *, total: Optional[int] = None,
                 desc: str = "", unit: str = "it", initial: int = 0,
                 file: Optional[TextIO] = None, interval: Optional[float] = None,
                 clock: Callable[[], float] = time.monotonic):
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.iterable = iterable
        self.total, self.desc, self.unit = total, desc, unit
        self.n = self.initial = initial
        self.file = file
        self.interval = interval_seconds() if interval is None else interval
        self.clock = clock
        self.start = clock()
        global _quiet_since
        if _quiet_since is None:
            _quiet_since = self.start
        self.postfix = ""
        self.printed = False
        self.closed = False

    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def set_postfix(self, values=None, **kwargs) -> None:
        """Values shown after the counts, e.g. {"loss": "0.412"} -> ' (loss 0.412)'."""
        items = {**(values or {}), **kwargs}
        self.postfix = ", ".join(f"{k} {v}" for k, v in items.items())

    disable = False  # as tqdm's attribute: this report shows something

    def due(self) -> bool:
        """True when the next update() prints a line: callers whose postfix costs a device
        sync (robust_accuracy's counts) compute it only then."""
        return self.clock() - _quiet_since >= self.interval

    def update(self, n: int = 1) -> None:
        global _quiet_since
        self.n += n
        now = self.clock()
        if now - _quiet_since < self.interval:
            return
        _quiet_since = now
        self.printed = True
        self._write(self.line(now))

    def line(self, now: float) -> str:
        """The periodic line: counts, rate, ETA (with a total) and the postfix."""
        done, elapsed = self.n - self.initial, now - self.start
        text = f"{self.desc}: {self._counts()}, {_rate(done, elapsed, self.unit)}"
        if self.total is not None and done > 0 and elapsed > 0:
            text += f", eta {_seconds(max(self.total - self.n, 0) * elapsed / done)}"
        return text + (f" ({self.postfix})" if self.postfix else "")

    def close(self) -> None:
        """A closing line (count, duration, rate), only if this report printed a line."""
        if self.closed:
            return
        self.closed = True
        if self.printed:
            elapsed = self.clock() - self.start
            self._write(f"{self.desc}: {self._counts()} in {_seconds(elapsed)}, "
                        f"{_rate(self.n - self.initial, elapsed, self.unit)}"
                        + (f" ({self.postfix})" if self.postfix else ""))

    def _counts(self) -> str:
        """'340/1000 steps' ('340 steps' without a total)."""
        of = f"/{self.total}" if self.total is not None else ""
        return f"{self.n}{of} {_plural(self.unit)}"

    def _write(self, text: str) -> None:
        f = self.file if self.file is not None else sys.stderr
        print(text, file=f, flush=True)


class _NoProgress(LineProgress):
    """A report that prints nothing (progress turned off) but still iterates."""

    disable = True

    def due(self) -> bool:
        return False

    def update(self, n: int = 1) -> None:
        self.n += n

    def close(self) -> None:
        self.closed = True


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress(iterable: Optional[Iterable] = None, *, total: Optional[int] = None,
             desc: str = "", unit: str = "it", initial: int = 0, enabled: bool = True,
             file: Optional[TextIO] = None):
    """A progress report: tqdm's bar (leave=False) when `file` (default stderr) is a
    terminal, else a LineProgress; either has update(n), set_postfix(dict), close(), and
    iterates `iterable` when given. Nothing is shown when `enabled` is False or
    ROBUSTOPS_PROGRESS=0.
    """
    stream = file if file is not None else sys.stderr
    if not enabled or os.environ.get("ROBUSTOPS_PROGRESS", "1").strip() == "0":
        return _NoProgress(iterable, total=total, desc=desc, unit=unit, initial=initial,
                           file=stream, interval=0.0)
    if _is_terminal(stream):
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, leave=False,
                    file=stream)
    return LineProgress(iterable, total=total, desc=desc, unit=unit, initial=initial,
                        file=stream)
