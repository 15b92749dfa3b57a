"""POST /say: text to speech queued like /speak, sentence by sentence, stopped by /interrupt.

The ordering/interrupt/error tests use a fake synthesizer (each "."-separated sentence becomes a
short speech-like sound), so they run anywhere; one test uses the real engine when festival or
espeak-ng is installed and reports the time from POST /say to the first speech frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import shutil
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pipeline_helpers import speechlike
from stream_helpers import TOKEN, auth

from anchor.config import ServerConfig
from anchor.errors import TtsError
from anchor.pipeline.models import PipelineModels
from anchor.pipeline.queues import QueueClosed
from anchor.pipeline.session import AnchorSession
from anchor.stream.app import AnchorServer

log = logging.getLogger(__name__)


class FakeSynthesizer:
    """Sentence k of a text ("."-separated) -> `seconds` of speech-like sound, after `delay_s`
    (synthesis time); counts what it synthesised and on which thread. The voice "nope" is
    refused up front (`check_voice`, as a real engine refuses a voice it does not have); a text
    containing "REFUSE" fails in synthesis (an engine that breaks on a text)."""

    def __init__(self, seconds: float = 0.5, delay_s: float = 0.0) -> None:
        self.seconds = seconds
        self.delay_s = delay_s
        self.sentences = 0
        self.threads: set[str] = set()
        self.calls: list[tuple[str, str | None, float | None]] = []

    def stream(self, text: str, *, voice: str | None = None, rate: float | None = None
               ) -> Iterator[SimpleNamespace]:
        self.calls.append((text, voice, rate))
        self.check_voice(voice)
        if "REFUSE" in text:
            raise TtsError("the engine failed on that text")
        for k, part in enumerate(p.strip() for p in text.split(".") if p.strip()):
            time.sleep(self.delay_s)
            self.threads.add(threading.current_thread().name)
            self.sentences += 1
            yield SimpleNamespace(text=part, samples=speechlike(self.seconds, seed=k), words=(),
                                  phonemes=())

    def check_voice(self, voice: str | None) -> str:
        if voice == "nope":
            raise TtsError("unknown voice 'nope'")
        return voice or "fake"


@contextlib.asynccontextmanager
async def text_app(
    models: PipelineModels, synthesizer: Any = None, tts: Any = None, **overrides: object
) -> AsyncIterator[tuple[TestClient, AnchorServer]]:
    """running_app (stream_helpers) with a synthesizer / TTS config for the desk."""
    cfg = dataclasses.replace(ServerConfig(latency_margin_ms=80), **overrides)  # type: ignore[arg-type]
    session = AnchorSession(models, cfg)
    server = AnchorServer(session, cfg, TOKEN, tts=tts, synthesizer=synthesizer)
    async with TestClient(TestServer(server.app, host="127.0.0.1")) as client:
        yield client, server


class FrameLog:
    """Records (arrival, source, speech) of every frame the session shows, from now on (a
    viewer's queue is latest-wins, so it has to be read all the time)."""

    def __init__(self, session: AnchorSession) -> None:
        self.session = session
        self.sub = session.subscribe()
        self.frames: list[tuple[float, str, bool]] = []
        self.indices: list[int] = []  # output frame index of each entry of `frames`
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        with contextlib.suppress(QueueClosed):  # the session stopped
            while True:
                f = await self.sub.video.get()
                self.frames.append((time.monotonic(), f.source, f.speech))
                self.indices.append(f.index)

    def order(self, since: float = 0.0) -> list[str]:
        """Sources of speech frames in order, repeats collapsed."""
        out: list[str] = []
        for t, src, speech in self.frames:
            if t >= since and speech and src and (not out or out[-1] != src):
                out.append(src)
        return out

    def first_speech(self, prefix: str = "", since: float = 0.0) -> float | None:
        for t, src, speech in self.frames:
            if t >= since and speech and src.startswith(prefix):
                return t
        return None

    async def wait(self, cond: Any, timeout_s: float) -> None:
        async with asyncio.timeout(timeout_s):
            while not cond():
                await asyncio.sleep(0.02)

    async def wait_idle_after(self, source: str, timeout_s: float) -> None:
        """Until `source` has been shown and an idle frame came after it."""
        def done() -> bool:
            seen = False
            for _t, src, _speech in self.frames:
                seen = seen or src == source
                if seen and not src:
                    return True
            return False

        await self.wait(done, timeout_s)

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self.session.unsubscribe(self.sub)


def one_line(text: str) -> bool:
    return len(text.strip().splitlines()) == 1


def test_say_plays_sentences_in_order_as_they_are_synthesised(models: PipelineModels) -> None:
    synth = FakeSynthesizer(seconds=0.5, delay_s=0.15)

    async def main() -> None:
        async with text_app(models, synth) as (client, server):
            frames = FrameLog(server.session)
            await asyncio.sleep(0.2)
            t0 = time.monotonic()
            resp = await client.post(
                "/say", json={"text": "One. Two. Three.", "voice": "en-us", "rate": 1.2},
                headers=auth())
            assert resp.status == 202, await resp.text()
            body = await resp.json()
            assert body["status"] == "queued" and body["id"] == "say:1"
            await frames.wait(lambda: frames.first_speech() is not None, 10)
            first_s = (frames.first_speech() or 0.0) - t0
            log.info("fake TTS: POST /say -> first speech frame %.0f ms", 1000 * first_s)
            print(f"\nfake TTS: POST /say -> first speech frame {1000 * first_s:.0f} ms")
            await frames.wait_idle_after("say:1/3", 15)
            assert frames.order() == ["say:1/1", "say:1/2", "say:1/3"]
            assert synth.calls == [("One. Two. Three.", "en-us", 1.2)]
            # Synthesis ran on the desk's own thread, never the default executor.
            assert synth.threads and all(t.startswith("anchor-tts") for t in synth.threads)
            # The first words play before the whole text is synthesised: 3 x 0.15 s of
            # synthesis + the pipeline, on a shared 2-core machine.
            assert first_s < 3.0
            await frames.close()

    asyncio.run(main())


def test_says_queue_in_order_and_never_interleave(models: PipelineModels) -> None:
    synth = FakeSynthesizer(seconds=0.4, delay_s=0.2)

    async def main() -> None:
        async with text_app(models, synth) as (client, server):
            frames = FrameLog(server.session)
            r1 = await client.post("/say", json={"text": "A. B. C."}, headers=auth())
            r2 = await client.post("/say", data="D. E.",
                                   headers={**auth(), "Content-Type": "text/plain"})
            assert (r1.status, r2.status) == (202, 202), await r2.text()
            assert (await r2.json())["id"] == "say:2"
            await frames.wait_idle_after("say:2/2", 20)
            assert frames.order() == ["say:1/1", "say:1/2", "say:1/3", "say:2/1", "say:2/2"]
            await frames.close()

    asyncio.run(main())


def test_interrupt_stops_a_say_in_progress(models: PipelineModels) -> None:
    synth = FakeSynthesizer(seconds=0.4, delay_s=0.3)
    text = ". ".join(f"Sentence {k}" for k in range(12)) + "."

    async def main() -> None:
        async with text_app(models, synth) as (client, server):
            frames = FrameLog(server.session)
            resp = await client.post("/say", json={"text": text}, headers=auth())
            assert resp.status == 202, await resp.text()
            waiting = await client.post("/say", json={"text": "Never said."}, headers=auth())
            assert waiting.status == 202
            await frames.wait(lambda: frames.first_speech() is not None, 10)
            resp = await client.post("/interrupt", headers=auth())
            assert resp.status == 200
            t_int = time.monotonic()
            made = synth.sentences
            await asyncio.sleep(1.6)
            late = [(src, sp) for t, src, sp in frames.frames if t > t_int + 0.1]
            assert late and not any(src or sp for src, sp in late), late
            assert synth.sentences <= made + 1  # synthesis stopped (one may have been running)
            assert synth.sentences < 12
            assert not any(s.startswith("say:2") for s in frames.order())
            status = await (await client.get("/rundown", headers=auth())).json()
            assert status["say"] == {"on_air": None, "waiting": 0, "last_error": None}
            # The desk still works after an interrupt.
            t1 = time.monotonic()
            resp = await client.post("/say", json={"text": "Again."}, headers=auth())
            assert resp.status == 202
            await frames.wait(lambda: frames.first_speech(since=t1) is not None, 10)
            assert frames.order(since=t1) == ["say:3/1"]
            await frames.close()

    asyncio.run(main())


def test_bad_say_requests_get_a_clear_4xx(models: PipelineModels) -> None:
    from anchor.config import TtsConfig

    synth = FakeSynthesizer()
    tts = TtsConfig(max_chars=200)
    plain = {**auth(), "Content-Type": "text/plain"}
    json_type = {**auth(), "Content-Type": "application/json"}

    async def main() -> None:
        async with text_app(models, synth, tts, max_signalling_bytes=4096) as (client, server):
            bad: list[tuple[dict[str, str], bytes, int]] = [
                (json_type, json.dumps({"text": ""}).encode(), 400),
                (json_type, json.dumps({"text": "   \n "}).encode(), 400),
                (json_type, json.dumps({"text": "a" * 201}).encode(), 400),
                (plain, b"caf\xe9 au lait", 400),  # Latin-1, not UTF-8
                (json_type, b'{"text": "caf\xe9"}', 400),
                (json_type, b'{"text": "\\ud800 lone surrogate"}', 400),
                (json_type, json.dumps({"text": "<speak>Hello</speak>"}).encode(), 400),
                (json_type, json.dumps({"text": "Hello <b>world</b>"}).encode(), 400),
                (json_type, json.dumps({"text": 3}).encode(), 400),
                (json_type, json.dumps({"words": "hi"}).encode(), 400),
                (json_type, json.dumps({"text": "hi", "extra": 1}).encode(), 400),
                (json_type, json.dumps({"text": "hi", "voice": "../../etc"}).encode(), 400),
                (json_type, json.dumps({"text": "hi", "rate": -1}).encode(), 400),
                (json_type, json.dumps({"text": "hi", "rate": "fast"}).encode(), 400),
                (json_type, b"{not json", 400),
                (json_type, json.dumps({"text": "a" * 5000}).encode(), 413),
            ]
            for headers, body, status in bad:
                resp = await client.post("/say", data=body, headers=headers)
                text = await resp.text()
                assert resp.status == status, (body[:60], resp.status, text)
                assert one_line(text), text
            for headers in ({}, {"Authorization": "Bearer wrong"}):
                resp = await client.post("/say", json={"text": "hi"}, headers=headers)
                assert resp.status == 401
            assert synth.calls == []  # nothing bad reached the engine
            assert (await client.get("/healthz")).status == 200
            status = await (await client.get("/rundown", headers=auth())).json()
            assert status["state"] == "idle" and status["say"]["waiting"] == 0

    asyncio.run(main())


def test_what_the_engine_refuses_is_400(models: PipelineModels) -> None:
    synth = FakeSynthesizer(seconds=0.4, delay_s=0.2)

    async def main() -> None:
        async with text_app(models, synth) as (client, server):
            # A voice the engine does not have: refused before queueing, even behind others.
            resp = await client.post("/say", json={"text": "One. Two. Three."}, headers=auth())
            assert resp.status == 202
            resp = await client.post("/say", json={"text": "Hello.", "voice": "nope"},
                                     headers=auth())
            text = await resp.text()
            assert resp.status == 400 and "unknown voice" in text and one_line(text)
            resp = await client.post("/say", json={"text": "Hello.", "rate": 9.0},
                                     headers=auth())
            text = await resp.text()
            assert resp.status == 400 and "'rate'" in text and one_line(text), text
            await client.post("/interrupt", headers=auth())
            await asyncio.sleep(0.3)
            # An engine failing on a text, on an idle desk: the reply says so.
            resp = await client.post("/say", json={"text": "REFUSE this."}, headers=auth())
            text = await resp.text()
            assert resp.status == 400 and "engine failed" in text and one_line(text)
            status = await (await client.get("/rundown", headers=auth())).json()
            assert status["say"]["waiting"] == 0 and "engine failed" in status["say"]["last_error"]

    asyncio.run(main())


def test_say_while_a_live_input_pushes_is_409(models: PipelineModels) -> None:
    async def main() -> None:
        async with text_app(models, FakeSynthesizer()) as (client, _server):
            ws = await client.ws_connect("/ws/audio", headers=auth())
            await ws.send_str('{"sample_rate": 16000}')
            assert (await ws.receive_json(timeout=5))["type"] == "ready"
            resp = await client.post("/say", json={"text": "Hello."}, headers=auth())
            assert resp.status == 409 and "busy" in await resp.text()
            await ws.close()

    asyncio.run(main())


def test_missing_engine_is_503_naming_the_package(models: PipelineModels,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import anchor.tts

    def missing(cfg: object) -> None:
        raise TtsError("festival is not installed: sudo apt-get install festival")

    monkeypatch.setattr(anchor.tts, "open_synthesizer", missing)

    async def main() -> None:
        async with text_app(models) as (client, _server):
            resp = await client.post("/say", json={"text": "Hello."}, headers=auth())
            text = await resp.text()
            assert resp.status == 503 and "apt-get install festival" in text and one_line(text)

    asyncio.run(main())


def real_tts_config() -> Any:
    from anchor.config import TtsConfig

    if shutil.which("festival") or shutil.which("espeak-ng"):
        return TtsConfig()
    pytest.skip("no TTS engine installed (apt-get install festival or espeak-ng)")


def test_say_with_the_real_engine_starts_quickly(models: PipelineModels) -> None:
    tts = real_tts_config()

    async def main() -> None:
        async with text_app(models, tts=tts) as (client, server):
            frames = FrameLog(server.session)
            # Open the engine once first (as a running server has after its first /say).
            engine = getattr(await server.desk.synthesizer(), "engine", "?")
            await asyncio.sleep(0.3)
            t0 = time.monotonic()
            resp = await client.post(
                "/say", json={"text": "Good evening. Here is the news."}, headers=auth())
            assert resp.status == 202, await resp.text()
            t_reply = time.monotonic() - t0
            await frames.wait(lambda: frames.first_speech() is not None, 15)
            first_s = (frames.first_speech() or 0.0) - t0
            msg = (f"real TTS ({engine}): POST /say -> 202 in "
                   f"{1000 * t_reply:.0f} ms, first speech frame {1000 * first_s:.0f} ms")
            log.info(msg)
            print("\n" + msg)
            await frames.wait_idle_after("say:1/2", 20)
            assert frames.order() == ["say:1/1", "say:1/2"]
            assert first_s < 5.0
            await frames.close()

    asyncio.run(main())


# -- the command line: anchor render --text/--script, anchor push --text ------------------------
def test_render_text_and_script_write_an_mp4(tiny_bundle: Any, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    import av

    from anchor.cli import main

    real_tts_config()
    script = tmp_path / "script.txt"
    script.write_text("Good evening.\nHere is the news.\n", encoding="utf-8")
    for source in (["--text", "Good evening."], ["--script", str(script)]):
        out = tmp_path / "text.mp4"
        code = main(["render", *source, "--avatar", str(tiny_bundle.path), "-o", str(out),
                     "--no-progress"])
        assert code == 0, capsys.readouterr().err
        assert "wrote" in capsys.readouterr().out
        with av.open(str(out)) as c:
            assert {s.type for s in c.streams} == {"video", "audio"}
            assert c.streams.video[0].frames > 10
        out.unlink()


@pytest.mark.parametrize(
    "args",
    [
        ["render", "--text", "", "-o", "x.mp4"],
        ["render", "--text", "<speak>Hi</speak>", "-o", "x.mp4"],
        ["render", "--text", "a" * 100_000, "-o", "x.mp4"],
        ["render", "--script", "missing.txt", "-o", "x.mp4"],
        ["render", "--script", "latin1.txt", "-o", "x.mp4"],
        ["push", "--text", "   ", "--token", "t"],
    ],
)
def test_bad_text_on_the_command_line_fails_in_one_line(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from anchor.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "latin1.txt").write_bytes("caf\u00e9 au lait.".encode("latin-1"))
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("anchor: error:") and "\n" not in err, err
    assert not (tmp_path / "x.mp4").exists()


def test_push_text_streams_synthesised_speech(models: PipelineModels) -> None:
    from anchor.commands.push import push_text

    synth = FakeSynthesizer(seconds=0.5, delay_s=0.1)

    async def main() -> None:
        async with text_app(models) as (client, server):
            frames = FrameLog(server.session)
            url = str(client.make_url("/ws/audio")).replace("http", "ws", 1)
            sent = await push_text(synth, "First. Second.", None, url, TOKEN, 16000)
            assert sent == pytest.approx(1.0, abs=0.01)
            await frames.wait(lambda: frames.first_speech() is not None, 10)
            assert synth.sentences == 2
            await frames.close()

    asyncio.run(main())


class WordSynthesizer(FakeSynthesizer):
    """FakeSynthesizer whose sentences carry word timings, as the real engines' do."""

    def stream(self, text: str, *, voice: str | None = None, rate: float | None = None
               ) -> Iterator[SimpleNamespace]:
        from anchor.tts import Timing

        for s in super().stream(text, voice=voice, rate=rate):
            words = s.text.split()
            step = self.seconds / max(1, len(words))
            s.words = tuple(Timing(w, k * step, (k + 1) * step) for k, w in enumerate(words))
            s.phonemes = (Timing("b", 0.0, 0.06, "b"),)
            yield s


def test_say_triggers_the_avatars_keyword_gesture(models: PipelineModels) -> None:
    import numpy as np

    from anchor.compose.motion import Gesture, GestureSet, HeadWarper, drawn_gesture

    bundle = models.engine.bundle  # type: ignore[attr-defined]
    w, h = models.engine.frame_size
    box = [float(v) for v in np.median(bundle.body.face_boxes, axis=0)]
    lean = Gesture("lean", ("breaking news",), drawn_gesture("lean", 1.0, 25))
    with_gestures = dataclasses.replace(models, gestures=GestureSet.of([lean]),
                                        warper=HeadWarper(w, h, box))

    async def main() -> None:
        async with text_app(with_gestures, WordSynthesizer(seconds=0.8)) as (client, server):
            frames = FrameLog(server.session)
            resp = await client.post("/say", json={"text": "Tonight. This is breaking news."},
                                     headers=auth())
            assert resp.status == 202, await resp.text()
            await frames.wait_idle_after("say:1/2", 15)
            motion = server.session.render.motion
            assert motion is not None and motion.gestures is not None
            ((name, start),) = motion.gestures.started
            assert name == "lean"
            # "news" is the 4th of 4 words of the second sentence: 0.6 s (15 frames) into it
            first_of_second = next(frames.indices[i] for i, (_t, src, _s)
                                   in enumerate(frames.frames) if src == "say:1/2")
            assert abs(start - (first_of_second + 15)) <= 1
            await frames.close()

    asyncio.run(main())
