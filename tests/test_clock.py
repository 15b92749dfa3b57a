from __future__ import annotations

import pytest

from anchor.clock import FakeTime, MediaClock, frame_to_samples, samples_to_frame


def test_frame_sample_mapping_is_exact_for_25fps_16k() -> None:
    assert frame_to_samples(1, 25, 16000) == 640
    assert samples_to_frame(639, 25, 16000) == 0
    assert samples_to_frame(640, 25, 16000) == 1
    for n in range(0, 10000, 37):
        assert samples_to_frame(frame_to_samples(n, 25, 16000), 25, 16000) == n


def test_deadlines_do_not_accumulate_error() -> None:
    fake = FakeTime(100.0)
    clock = MediaClock(fake)
    clock.start()
    # 1000 frames later the deadline is exactly origin + 1000/25, however pacing went.
    assert clock.deadline(1000 / 25) == pytest.approx(140.0)
    fake.advance(0.5)
    assert clock.now() == pytest.approx(0.5)
    assert clock.behind(0.4) == pytest.approx(0.1)


def test_rebase_makes_pts_due_now() -> None:
    fake = FakeTime(0.0)
    clock = MediaClock(fake)
    clock.start()
    fake.advance(3.0)
    clock.rebase(2.0)
    assert clock.behind(2.0) == pytest.approx(0.0)
