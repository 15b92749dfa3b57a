"""The idle loop never jumps: ping-pong steps by at most one frame forever; crossfade dissolves."""

from __future__ import annotations

import numpy as np
import pytest

from anchor.compose.idle import IdleLoop
from anchor.config import ComposeConfig
from anchor.errors import ComposeError


@pytest.mark.parametrize("n", [1, 2, 3, 50])
def test_pingpong_steps_by_at_most_one_across_many_loops(n: int) -> None:
    loop = IdleLoop(n, "pingpong")
    idx = np.array([loop.index(c) for c in range(10 * max(n, 2) * 2 + 7)])
    assert idx.min() == 0 and idx.max() == n - 1
    assert np.abs(np.diff(idx)).max(initial=0) <= 1


def test_pingpong_visits_every_frame_each_period() -> None:
    loop = IdleLoop(10, "pingpong")
    assert sorted({loop.index(c) for c in range(loop.period)}) == list(range(10))


def test_crossfade_is_continuous_at_the_loop_point() -> None:
    loop = IdleLoop(40, "crossfade", crossfade_frames=8)
    # the displayed "position" = mix of the two frames' indices along the source footage
    prev = None
    for c in range(5 * loop.period):
        a, b, w = loop.weights(c)
        assert 0.0 <= w <= 1.0
        assert 0 <= a < 40 and 0 <= b < 40
        if prev is not None and w == 0.0 and prev[2] == 0.0:
            assert abs(a - prev[0]) <= 1
        prev = (a, b, w)
    # at the wrap the picture is still mostly the frame that came just before
    last = loop.weights(loop.period - 1)
    first = loop.weights(loop.period)
    assert last == (loop.period - 1, loop.period - 1, 0.0)
    assert first[0] == loop.period and first[2] < 0.1  # frame N-C, barely mixed with frame 0


def test_crossfade_weights_rise_smoothly() -> None:
    loop = IdleLoop(40, "crossfade", crossfade_frames=8)
    ws = [loop.weights(c)[2] for c in range(8)]
    assert np.all(np.diff(ws) > 0) and max(np.diff(ws)) <= 1 / 8 + 1e-9


def test_from_config_and_errors() -> None:
    assert IdleLoop.from_config(30, ComposeConfig()).mode == "pingpong"
    with pytest.raises(ComposeError, match="too few"):
        IdleLoop(10, "crossfade", crossfade_frames=8)
    with pytest.raises(ComposeError, match="unknown mode"):
        IdleLoop(10, "shuffle")
