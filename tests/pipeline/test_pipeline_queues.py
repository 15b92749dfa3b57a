"""MediaQueue: capacity in milliseconds, per-edge drop policies, flush, close; observers."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from anchor.pipeline.items import OutputFrame
from anchor.pipeline.observers import StageRecorder, percentile, stage_latencies
from anchor.pipeline.queues import DropPolicy, MediaQueue, QueueClosed


def ms_queue(policy: DropPolicy, capacity: float = 100) -> MediaQueue[float]:
    return MediaQueue("q", capacity, policy, lambda d: d)  # the item is its own duration


def test_block_waits_for_room_and_never_drops() -> None:
    async def main() -> list[float]:
        q = ms_queue(DropPolicy.BLOCK)
        await q.put(60)
        await q.put(40)
        assert q.depth_ms == 100
        blocked = asyncio.create_task(q.put(20))
        await asyncio.sleep(0.01)
        assert not blocked.done()  # full: the producer waits
        assert await q.get() == 60
        await asyncio.wait_for(blocked, 1)
        return [await q.get(), await q.get()]

    assert asyncio.run(main()) == [40, 20]


def test_oversized_item_enters_an_empty_block_queue() -> None:
    async def main() -> None:
        q = ms_queue(DropPolicy.BLOCK)
        await asyncio.wait_for(q.put(500), 1)
        assert not q.put_nowait(1)  # but nothing more fits beside it

    asyncio.run(main())


def test_drop_oldest_counts_what_it_drops() -> None:
    async def main() -> None:
        q = ms_queue(DropPolicy.DROP_OLDEST)
        for d in (40, 40, 40, 40):
            q.put_nowait(d)
        assert len(q) == 2 and q.dropped == 2 and q.depth_ms == 80

    asyncio.run(main())


def test_latest_keeps_only_the_newest() -> None:
    async def main() -> None:
        q: MediaQueue[int] = MediaQueue("v", 40, DropPolicy.LATEST, lambda _x: 40)
        for i in range(5):
            q.put_nowait(i)
        assert await q.get() == 4 and q.dropped == 4

    asyncio.run(main())


def test_flush_wakes_blocked_producer_and_counts() -> None:
    async def main() -> None:
        q = ms_queue(DropPolicy.BLOCK)
        await q.put(100)
        blocked = asyncio.create_task(q.put(10))
        await asyncio.sleep(0.01)
        assert q.flush() == 1 and q.flushed == 1
        await asyncio.wait_for(blocked, 1)
        assert len(q) == 1

    asyncio.run(main())


def test_close_ends_consumers_and_get_until_times_out() -> None:
    async def main() -> None:
        q = ms_queue(DropPolicy.BLOCK)
        loop = asyncio.get_running_loop()
        assert await q.get_until(loop.time() + 0.02, loop.time) is None
        getter = asyncio.create_task(q.get())
        await asyncio.sleep(0.01)
        q.close()
        with pytest.raises(QueueClosed):
            await asyncio.wait_for(getter, 1)
        with pytest.raises(QueueClosed):
            await q.put(1)

    asyncio.run(main())


def frame(i: int, speech: bool, **stamps: float) -> OutputFrame:
    return OutputFrame(i, np.zeros((2, 2, 3), np.uint8), np.zeros(640, np.float32), speech,
                       timestamps=dict(stamps))


def test_recorder_latencies_fps_and_events() -> None:
    rec = StageRecorder(keep_frames=50)
    for i in range(100):
        t = i * 0.04
        rec.on_frame(frame(i, i % 2 == 0, audio_in=t, analysed=t + 0.3, render_start=t + 0.31,
                           rendered=t + 0.33, out=t + 0.5))
    rec.on_event("underrun", 2)
    summary = rec.summary()
    assert len(rec.frames) == 50 and rec.frames_out == 100 and rec.speech_frames_out == 50
    assert summary["total_ms_p50"] == pytest.approx(500.0)
    assert summary["render_ms_p50"] == pytest.approx(20.0)
    assert summary["fps"] == pytest.approx(25.0)
    assert summary["underrun"] == 2


def test_stage_latencies_and_percentile() -> None:
    assert stage_latencies({"audio_in": 1.0, "out": 1.25}) == {"total": 0.25}
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5


def test_player_releases_on_absolute_deadlines_and_resyncs_when_late(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With a hand-driven clock: on-time frames keep their deadlines exactly; a 300 ms stall
    makes the player rebase its clock once (with a warning) instead of rushing frames out."""
    from anchor.clock import FakeTime, MediaClock
    from anchor.pipeline.observers import ObserverList, StageRecorder
    from anchor.pipeline.queues import DropPolicy, MediaQueue
    from anchor.pipeline.stages import Player, frame_item_ms

    fake = FakeTime()
    clock = MediaClock(fake)
    clock.start()
    released: list[tuple[int, float]] = []

    def publish(f: OutputFrame) -> None:
        released.append((f.index, fake.t))
        fake.advance(0.3 if f.index == 4 else 0.04)  # frame 4's send stalls for 300 ms

    async def main() -> StageRecorder:
        q: MediaQueue = MediaQueue("playout", 1000, DropPolicy.BLOCK, frame_item_ms(25))
        rec = StageRecorder()
        player = Player(q, clock, 25, publish, resync_frames=3, observers=ObserverList([rec]))
        for i in range(10):
            q.put_nowait(frame(i, False))
        task = asyncio.create_task(player.run())
        while len(released) < 10:
            await asyncio.sleep(0.001)
        task.cancel()
        return rec

    rec = asyncio.run(main())
    assert [i for i, _ in released] == list(range(10))
    times = [t for _, t in released]
    assert times[:5] == pytest.approx([0.0, 0.04, 0.08, 0.12, 0.16])  # exactly on deadline
    assert rec.events["resync"] == 1 and "resync" in caplog.text
    # after the rebase the frames are spaced by one frame again (no burst to catch up)
    assert np.diff(times[5:]) == pytest.approx([0.04] * 4)
