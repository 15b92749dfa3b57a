"""Progress for long commands: a tqdm bar on a terminal, plain log lines everywhere else.

`build-avatar`, `prepare`, training and `render` often run under nohup, CI or a service, where a
tqdm bar turns into thousands of carriage-return updates in the log. `progress_bar(...)` returns tqdm
when stderr is a terminal; otherwise a `LogProgress` with the same small surface (iterate,
`update`, `set_postfix`, `set_postfix_str`, `close`) that logs one line at most every
`every_s` seconds and at the end: what, done/total, rate and ETA.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

log = logging.getLogger("anchor.progress")


class LogProgress:
    """tqdm's surface, as throttled log lines (see the module docstring)."""

    def __init__(self, iterable: Iterable[Any] | None = None, *, total: int | None = None,
                 desc: str = "", unit: str = "it", initial: int = 0, every_s: float = 10.0,
                 time_fn: Any = time.monotonic, logger: logging.Logger = log) -> None:
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total = total
        self.desc = desc
        self.unit = unit
        self.n = initial
        self.every_s = every_s
        self._time = time_fn
        self._log = logger
        self._t0 = time_fn()
        self._start_n = initial
        self._last = self._t0
        self._postfix = ""
        self._closed = False

    def __iter__(self) -> Iterator[Any]:
        assert self.iterable is not None
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True,
                    **kwargs: Any) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self._postfix = ", ".join(f"{k}={_fmt(v)}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self._postfix = s

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self._time()
        if now - self._last >= self.every_s:
            self._last = now
            self._emit(now)

    def line(self, now: float | None = None) -> str:
        """The progress as one line: `desc: 40/100 epoch (40 %), 2.5 epoch/s, ETA 0:24`."""
        now = self._time() if now is None else now
        elapsed = max(1e-9, now - self._t0)
        rate = (self.n - self._start_n) / elapsed
        done = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        pct = f" ({100 * self.n / self.total:.0f} %)" if self.total else ""
        eta = ""
        if self.total and rate > 0 and self.n < self.total:
            eta = f", ETA {_clock((self.total - self.n) / rate)}"
        post = f" [{self._postfix}]" if self._postfix else ""
        return (f"{self.desc}: {done} {self.unit}{pct}, {_rate(rate, self.unit)}{eta}, "
                f"{_clock(elapsed)} so far{post}")

    def _emit(self, now: float) -> None:
        self._log.info("%s", self.line(now))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._emit(self._time())


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _rate(rate: float, unit: str) -> str:
    return f"{rate:.2f} {unit}/s" if rate >= 1 or rate == 0 else f"{1 / rate:.1f} s/{unit}"


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def progress_bar(iterable: Iterable[Any] | None = None, *, total: int | None = None,
             desc: str = "", unit: str = "it", disable: bool = False, leave: bool = True,
             initial: int = 0, every_s: float = 10.0) -> Any:
    """A progress bar for `iterable` (or manual `update`s): tqdm on a terminal, `LogProgress`
    when stderr is not one, nothing shown when `disable`."""
    from tqdm import tqdm

    if disable or sys.stderr.isatty():
        return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, leave=leave,
                    initial=initial)
    return LogProgress(iterable, total=total, desc=desc, unit=unit, initial=initial,
                       every_s=every_s)
