"""/speak limits: a duration cap checked before decoding past it, decoding on a dedicated bounded
thread (never the default executor aiortc's encoders use), sample memory released when playback
ends or is interrupted, one-line errors for unreadable uploads, and a supervised speak worker.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
import pytest
from pipeline_helpers import speechlike
from stream_helpers import auth, running_app

import anchor.audio.decode as decode_mod
from anchor.pipeline.models import PipelineModels
from anchor.pipeline.session import AnchorSession, AudioInput

SR = 16000


# -- fixtures ----------------------------------------------------------------------------------
def write_flac_silence(path: Path, seconds: float) -> Path:
    """A small FLAC of silence (2 h is ~1.3 MB; same as `sox -n -r 16000 -c 1 x.flac trim 0 S`)."""
    n = int(seconds * SR)
    step = 1 << 16
    zeros = np.zeros((1, step), np.int16)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("flac", rate=SR, layout="mono")
        for pts in range(0, n, step):
            frame = av.AudioFrame.from_ndarray(zeros[:, : min(step, n - pts)], format="s16",
                                               layout="mono")
            frame.sample_rate, frame.pts = SR, pts
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def write_wav(path: Path, x: np.ndarray) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def write_mp4_with_audio(path: Path, seconds: float = 2.0) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=SR, layout="mono")
        x = (0.3 * np.sin(2 * np.pi * 300 * np.arange(int(seconds * SR)) / SR)).astype(np.float32)
        for i in range(0, x.size, 1024):
            frame = av.AudioFrame.from_ndarray(x[None, i : i + 1024], format="flt", layout="mono")
            frame.sample_rate, frame.pts = SR, i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def two_hours_flac(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_flac_silence(tmp_path_factory.mktemp("long") / "two_hours.flac", 7200)


@pytest.fixture(scope="module")
def ten_minutes_flac(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_flac_silence(tmp_path_factory.mktemp("long") / "ten_minutes.flac", 600)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def upload(data: bytes, filename: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("file", data, filename=filename)
    return form


def big_sample_bytes(session: AnchorSession, floor: int = 1 << 20) -> int:
    """Bytes of sample arrays the speak path still holds: the session's speak attributes, its
    queued jobs, and the locals of the speak task's coroutine chain (0 when under `floor` bytes
    in all). Implementation-agnostic on purpose: it finds a decoded file
    wherever the speak path keeps it."""

    def arrays_in(obj: Any, depth: int = 0) -> Iterator[np.ndarray]:
        if isinstance(obj, np.ndarray):
            yield obj.base if isinstance(obj.base, np.ndarray) else obj
        elif depth > 4 or isinstance(obj, AnchorSession):
            return
        elif isinstance(obj, list | tuple | set) or type(obj).__name__ == "deque":
            for v in list(obj):
                yield from arrays_in(v, depth + 1)
        elif hasattr(obj, "__dict__") and type(obj).__module__ == "anchor.pipeline.session":
            for v in vars(obj).values():
                yield from arrays_in(v, depth + 1)

    holders: list[Any] = [list(session._speak_queue._queue)]  # type: ignore[attr-defined]
    holders += [v for k, v in vars(session).items() if "speak" in k]
    for task in asyncio.all_tasks():
        if task.get_name() != "anchor-speak":
            continue
        coro: Any = task.get_coro()
        while coro is not None and getattr(coro, "cr_frame", None) is not None:
            holders.append(list(coro.cr_frame.f_locals.values()))
            coro = coro.cr_await
    held = {id(a): a.nbytes for h in holders for a in arrays_in(h)}
    total = sum(held.values())
    return total if total >= floor else 0


# -- the duration cap --------------------------------------------------------------------------
def test_two_hour_file_is_rejected_at_once_against_the_default_cap(
    models: PipelineModels, two_hours_flac: Path
) -> None:
    """Issue: 2 h of silence decoded to +880 MB; now 413 before anything is decoded."""

    async def main() -> None:
        async with running_app(models) as (client, server):
            assert server.cfg.max_speak_s == 600.0
            data = two_hours_flac.read_bytes()
            gc.collect()
            before = rss_mb()
            t0 = time.perf_counter()
            resp = await client.post("/speak", data=upload(data, "two_hours.flac"), headers=auth())
            elapsed = time.perf_counter() - t0
            text = await resp.text()
            grown = rss_mb() - before
            assert resp.status == 413, text
            assert text.strip() == (
                "two_hours.flac: the audio is 7200 s long, longer than the 600 s limit "
                "(server.max_speak_s)"
            )
            assert elapsed < 1.0, elapsed  # a full decode of 2 h takes seconds
            assert grown < 200, grown
            assert server.session._speak_queue.empty()

    asyncio.run(main())


def test_cap_is_enforced_while_decoding_when_no_duration_is_declared(
    ten_minutes_flac: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file that declares no duration is stopped as soon as it passes the cap."""
    monkeypatch.setattr(decode_mod, "_declared_seconds", lambda *_a: None)
    decoded = 0
    with pytest.raises(decode_mod.AudioTooLong, match="more than 5 s long, longer than the 5 s"):
        for chunk in decode_mod.iter_audio(ten_minutes_flac, SR, chunk_s=0.2, max_seconds=5):
            assert chunk.dtype == np.float32 and chunk.size == SR // 5
            decoded += chunk.size
    assert decoded <= 5 * SR  # never more than the cap was handed out
    # the whole-file helper keeps working (and honours a cap when given one)
    assert decode_mod.decode_audio(ten_minutes_flac, SR).size == 600 * SR
    with pytest.raises(decode_mod.AudioTooLong):
        decode_mod.decode_audio(ten_minutes_flac, SR, max_seconds=60)


def test_long_short_and_unreadable_uploads(models: PipelineModels, tmp_path: Path) -> None:
    png = (
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00"
        b"\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x35"
        b"\x81\x84\x00\x00\x00\x00IEND\xaeB`\x82"
    )
    mp4 = write_mp4_with_audio(tmp_path / "clip.mp4").read_bytes()
    five_s = write_wav(tmp_path / "five.wav", speechlike(5.0)).read_bytes()
    one_s = write_wav(tmp_path / "one.wav", speechlike(1.0)).read_bytes()

    async def main() -> None:
        async with running_app(models, max_speak_s=2.0) as (client, server):
            resp = await client.post("/speak", data=upload(five_s, "five.wav"), headers=auth())
            assert resp.status == 413
            assert (await resp.text()).strip() == (
                "five.wav: the audio is 5 s long, longer than the 2 s limit (server.max_speak_s)"
            )
            resp = await client.post("/speak", data=upload(one_s, "one.wav"), headers=auth())
            assert resp.status == 202, await resp.text()
            for data, name in ((png, "image.png"), (mp4[: len(mp4) // 2], "cut.mp4"),
                               (b"this is not audio" * 10, "upload")):
                resp = await client.post("/speak", data=upload(data, name), headers=auth())
                text = await resp.text()
                assert resp.status == 415, (name, text)
                lines = text.strip().splitlines()
                assert len(lines) == 1 and lines[0].startswith(f"{name}: "), text
                for internal in ("/tmp", "anchor-speak", "Traceback", "Error:", "errno"):
                    assert internal.lower() not in text.lower(), (name, text)
            resp = await client.post("/speak", data=b"", headers=auth())
            assert resp.status == 400
            resp = await client.post("/speak", data=b"garbage", headers={
                **auth(), "Content-Type": "multipart/form-data; boundary=zzz"})
            assert resp.status == 400 and len((await resp.text()).strip().splitlines()) == 1
            assert (await client.get("/healthz")).status == 200
            assert server.session.running

    asyncio.run(main())


# -- the dedicated decode thread -----------------------------------------------------------------
def test_decoding_runs_on_its_own_bounded_thread_and_never_blocks_the_default_executor(
    models: PipelineModels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Six uploads at once (each decode made slow) leave the default executor free."""
    wav = write_wav(tmp_path / "one.wav", speechlike(1.0)).read_bytes()
    real_open = av.open
    threads: list[str] = []
    running = 0
    most = 0
    lock = threading.Lock()

    def slow_open(*args: Any, **kwargs: Any) -> Any:
        nonlocal running, most
        with lock:
            threads.append(threading.current_thread().name)
            running += 1
            most = max(most, running)
        try:
            time.sleep(0.4)  # a slow decode
            return real_open(*args, **kwargs)
        finally:
            with lock:
                running -= 1

    async def main() -> None:
        async with running_app(models, speak_decode_wait_s=10.0) as (client, _server):
            monkeypatch.setattr(decode_mod.av, "open", slow_open)
            loop = asyncio.get_running_loop()
            posts = [
                asyncio.create_task(client.post("/speak", data=upload(wav, f"{i}.wav"),
                                                headers=auth()))
                for i in range(6)
            ]
            worst = 0.0
            while not all(p.done() for p in posts):
                t0 = time.perf_counter()
                await loop.run_in_executor(None, lambda: None)  # what an encoder would need
                worst = max(worst, time.perf_counter() - t0)
                await asyncio.sleep(0.05)
            statuses = [(await p).status for p in posts]
            monkeypatch.setattr(decode_mod.av, "open", real_open)
            assert statuses == [202] * 6, statuses
            assert worst < 0.2, worst
            assert most == 1  # speak_decode_workers = 1
            assert threads and all(t.startswith("anchor-decode") for t in threads), threads

    asyncio.run(main())


def test_an_upload_that_cannot_get_a_decoder_in_time_gets_503(
    models: PipelineModels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wav = write_wav(tmp_path / "one.wav", speechlike(1.0)).read_bytes()
    real_open = av.open

    def slow_open(*args: Any, **kwargs: Any) -> Any:
        time.sleep(1.0)
        return real_open(*args, **kwargs)

    async def main() -> None:
        async with running_app(models, speak_decode_wait_s=0.2) as (client, _server):
            monkeypatch.setattr(decode_mod.av, "open", slow_open)
            first = asyncio.create_task(client.post("/speak", data=upload(wav, "a.wav"),
                                                    headers=auth()))
            await asyncio.sleep(0.3)
            resp = await client.post("/speak", data=upload(wav, "b.wav"), headers=auth())
            text = await resp.text()
            assert resp.status == 503 and resp.headers["Retry-After"] == "1", text
            assert len(text.strip().splitlines()) == 1 and "decoder" in text
            assert (await first).status == 202
            monkeypatch.setattr(decode_mod.av, "open", real_open)

    asyncio.run(main())


# -- memory is released --------------------------------------------------------------------------
def test_samples_are_released_when_playback_ends(models: PipelineModels, tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "speech.wav", speechlike(1.0)).read_bytes()

    async def main() -> None:
        async with running_app(models) as (client, server):
            sub = server.session.subscribe()
            resp = await client.post("/speak", data=upload(wav, "speech.wav"), headers=auth())
            assert resp.status == 202
            async with asyncio.timeout(10):
                while not (await sub.video.get()).speech:
                    pass
                while server.session.active_input is not None:  # played to the end
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.1)
            assert big_sample_bytes(server.session, floor=16 << 10) == 0

    asyncio.run(main())


def test_interrupt_frees_a_long_file(models: PipelineModels, ten_minutes_flac: Path) -> None:
    """Issue: memory stayed high after /interrupt. 10 min of 16 kHz float32 is 38 MB."""
    data = ten_minutes_flac.read_bytes()

    async def main() -> None:
        async with running_app(models) as (client, server):
            session = server.session
            sub = session.subscribe()
            await asyncio.sleep(0.5)  # let the idle loop settle its allocations
            gc.collect()
            before = rss_mb()
            resp = await client.post("/speak", data=upload(data, "ten.flac"), headers=auth())
            assert resp.status == 202, await resp.text()
            async with asyncio.timeout(10):
                while session.active_input is None:
                    await asyncio.sleep(0.02)
            await sub.video.get()
            assert big_sample_bytes(session) > 30 << 20  # the file is held while it plays
            resp = await client.post("/interrupt", headers=auth())
            assert resp.status == 200
            async with asyncio.timeout(3):
                while big_sample_bytes(session) or session.active_input is not None:
                    await asyncio.sleep(0.05)
            assert session._speak_queue.empty()
            await asyncio.sleep(0.3)  # the heap trim runs on the decode thread
            gc.collect()
            grown = rss_mb() - before
            assert grown < 25, f"RSS still {grown:.0f} MB above where it started"

    asyncio.run(main())


# -- supervision -------------------------------------------------------------------------------
def test_speak_worker_crash_is_logged_counted_and_it_restarts(
    models: PipelineModels, speech_wav: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    real_push = AudioInput.push
    crashed = False

    async def push_once_broken(self: AudioInput, samples: np.ndarray, arrival: float | None = None
                               ) -> None:
        nonlocal crashed
        if self.name.startswith("file:") and not crashed:
            crashed = True
            raise RuntimeError("boom")
        await real_push(self, samples, arrival)

    monkeypatch.setattr(AudioInput, "push", push_once_broken)
    wav = speech_wav.read_bytes()

    async def main() -> None:
        async with running_app(models) as (client, server):
            sub = server.session.subscribe()
            resp = await client.post("/speak", data=upload(wav, "first.wav"), headers=auth())
            assert resp.status == 202
            async with asyncio.timeout(5):
                while not crashed or server.session.active_input is not None:
                    await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)  # the supervisor's restart pause
            resp = await client.post("/speak", data=upload(wav, "second.wav"), headers=auth())
            assert resp.status == 202
            async with asyncio.timeout(10):
                while not (await sub.video.get()).speech:
                    pass
            metrics = await (await client.get("/metrics")).text()
            assert 'anchor_events_total{event="stage_error"} 1.0' in metrics
            assert "pipeline stage speak failed" in caplog.text

    asyncio.run(main())
