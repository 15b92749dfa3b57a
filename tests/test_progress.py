"""Progress in logs: one readable line every few seconds, not tqdm's carriage returns."""

from __future__ import annotations

import logging

import pytest

from anchor.progress import LogProgress, progress_bar


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_log_lines_are_throttled_and_say_step_rate_and_eta(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    bar = LogProgress(range(100), desc="train tcn", unit="epoch", every_s=10.0, time_fn=clock)
    with caplog.at_level(logging.INFO, logger="anchor.progress"):
        for i in bar:
            clock.t = (i + 1) * 0.5  # 2 epochs per second
            if i == 59:
                bar.set_postfix(val_mse=0.012345)
    lines = [r.getMessage() for r in caplog.records]
    # 50 s of work, a line at most every 10 s, plus the last
    assert 4 <= len(lines) <= 6
    assert lines[0].startswith("train tcn: 20/100 epoch (20 %), 2.00 epoch/s, ETA 0:40")
    assert lines[-1].startswith("train tcn: 100/100 epoch (100 %)") and "ETA" not in lines[-1]
    assert "val_mse=0.01235" in lines[-1]
    assert all("\r" not in line for line in lines)


def test_slow_steps_show_seconds_per_step_and_resume_counts_from_initial() -> None:
    clock = Clock()
    bar = LogProgress(total=30, desc="renderer", unit="epoch", initial=10, time_fn=clock)
    clock.t = 120.0
    bar.update(2)  # 2 epochs in 2 minutes after resuming at epoch 10
    assert bar.line() == "renderer: 12/30 epoch (40 %), 60.0 s/epoch, ETA 18:00, 2:00 so far"


def test_off_a_terminal_the_bar_is_log_lines_and_disable_shows_nothing() -> None:
    # under pytest stderr is captured, not a terminal
    assert isinstance(progress_bar(range(3), desc="x"), LogProgress)
    assert not isinstance(progress_bar(range(3), desc="x", disable=True), LogProgress)
