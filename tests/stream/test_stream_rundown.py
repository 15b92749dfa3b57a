"""/rundown: items (text or audio) played in order with pauses; GET shows on air and next;
interrupt skips to the next item; DELETE empties the list.

Driven over HTTP on loopback (the app on 127.0.0.1); the frames' `source` (the speak job:
`rundown:<id>/<sentence>`, `say:<n>/<sentence>`) shows the order speech reached the screen. A
fake synthesizer keeps the logic tests engine-free; the last test uses the real TTS engine.
"""

from __future__ import annotations

import asyncio
import json
import time
import wave
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from pipeline_helpers import SR, speechlike
from stream_helpers import auth
from test_stream_say import FakeSynthesizer, FrameLog, one_line, real_tts_config, text_app

from anchor.pipeline.models import PipelineModels

FPS = 25


def write_wav(path: Path, x: np.ndarray) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes((x * 32767).astype("<i2").tobytes())
    return path


def rundown_form(body: Any, files: dict[str, Path]) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("rundown", json.dumps(body), content_type="application/json")
    for name, path in files.items():
        form.add_field(name, path.read_bytes(), filename=path.name, content_type="audio/wav")
    return form


def first_frame(frames: FrameLog, prefix: str) -> int:
    return next(i for i, (_t, src, _s) in enumerate(frames.frames) if src.startswith(prefix))


def last_frame(frames: FrameLog, prefix: str) -> int:
    return max(i for i, (_t, src, _s) in enumerate(frames.frames) if src.startswith(prefix))


def test_rundown_plays_text_and_audio_in_order_with_pauses(
    models: PipelineModels, tmp_path: Path
) -> None:
    synth = FakeSynthesizer(seconds=0.5, delay_s=0.05)
    clip = write_wav(tmp_path / "clip.wav", speechlike(0.8, seed=5))

    async def main() -> None:
        async with text_app(models, synth) as (client, server):
            frames = FrameLog(server.session)
            body = {
                "pause_s": 0.6,
                "items": [
                    {"text": "Alpha one. Alpha two.", "voice": "en-us"},
                    {"audio": "clip", "pause_s": 0.2},
                    "Charlie.",
                ],
            }
            resp = await client.post("/rundown", data=rundown_form(body, {"clip": clip}),
                                     headers=auth())
            assert resp.status == 202, await resp.text()
            added = await resp.json()
            assert added["ids"] == [1, 2, 3]
            await frames.wait(lambda: frames.first_speech("rundown:1") is not None, 10)
            status = await (await client.get("/rundown", headers=auth())).json()
            assert status["state"] == "on_air" and status["on_air"]["id"] == 1
            assert status["on_air"]["kind"] == "text"
            assert [i["id"] for i in status["next"]] == [2, 3]
            assert status["next"][0] == {"id": 2, "kind": "audio", "title": "clip.wav",
                                         "pause_s": 0.2, "seconds": 0.8}
            assert status["next"][1]["title"] == "Charlie." and status["next"][1]["pause_s"] == 0.6
            await frames.wait_idle_after("rundown:3/1", 20)
            assert frames.order() == ["rundown:1/1", "rundown:1/2", "rundown:2/1", "rundown:3/1"]
            # The pause runs after an item has left the screen: idle frames in between.
            gap_12 = first_frame(frames, "rundown:2") - last_frame(frames, "rundown:1") - 1
            gap_23 = first_frame(frames, "rundown:3") - last_frame(frames, "rundown:2") - 1
            assert gap_12 >= 0.6 * FPS - 2, gap_12
            assert 0.2 * FPS - 2 <= gap_23 < gap_12, (gap_23, gap_12)
            await frames.wait(lambda: server.desk.done == 3, 5)
            status = await (await client.get("/rundown", headers=auth())).json()
            assert status["state"] == "idle" and status["on_air"] is None
            assert status["next"] == [] and (status["done"], status["skipped"]) == (3, 0)
            await frames.close()

    asyncio.run(main())


def test_say_goes_on_air_between_rundown_items(models: PipelineModels) -> None:
    synth = FakeSynthesizer(seconds=0.4, delay_s=0.05)

    async def main() -> None:
        async with text_app(models, synth) as (client, server):
            frames = FrameLog(server.session)
            resp = await client.post("/rundown", json={
                "items": [{"text": "First one. First two. First three."}, {"text": "Second."}],
                "pause_s": 0.2,
            }, headers=auth())
            assert resp.status == 202, await resp.text()
            await frames.wait(lambda: frames.first_speech("rundown:1") is not None, 10)
            resp = await client.post("/say", json={"text": "Breaking news."}, headers=auth())
            assert resp.status == 202, await resp.text()
            await frames.wait_idle_after("rundown:2/1", 20)
            assert frames.order() == ["rundown:1/1", "rundown:1/2", "rundown:1/3", "say:1/1",
                                      "rundown:2/1"]
            await frames.close()

    asyncio.run(main())


def test_interrupt_skips_to_the_next_item(models: PipelineModels) -> None:
    synth = FakeSynthesizer(seconds=0.4, delay_s=0.1)
    long_text = ". ".join(f"Part {k}" for k in range(10)) + "."

    async def main() -> None:
        async with text_app(models, synth) as (client, server):
            frames = FrameLog(server.session)
            resp = await client.post("/rundown", json={
                "items": [{"text": long_text, "pause_s": 5.0}, {"text": "Bravo."}],
            }, headers=auth())
            assert resp.status == 202, await resp.text()
            await frames.wait(lambda: frames.first_speech("rundown:1") is not None, 10)
            t_int = time.monotonic()
            resp = await client.post("/interrupt", headers=auth())
            assert resp.status == 200
            # The next item starts at once (its pause is skipped too), the first never returns.
            await frames.wait(lambda: frames.first_speech("rundown:2") is not None, 3)
            started = (frames.first_speech("rundown:2") or 0.0) - t_int
            print(f"\ninterrupt -> next rundown item's first speech frame {1000 * started:.0f} ms")
            await frames.wait_idle_after("rundown:2/1", 10)
            after = frames.order(since=t_int + 0.2)
            assert after == ["rundown:2/1"], after
            await frames.wait(lambda: server.desk.done == 1, 5)
            status = await (await client.get("/rundown", headers=auth())).json()
            assert (status["done"], status["skipped"], status["next"]) == (1, 1, [])
            await frames.close()

    asyncio.run(main())


def test_an_item_the_engine_refuses_is_skipped(models: PipelineModels) -> None:
    async def main() -> None:
        async with text_app(models, FakeSynthesizer()) as (client, server):
            frames = FrameLog(server.session)
            resp = await client.post("/rundown", json={
                "items": [{"text": "REFUSE this.", "pause_s": 5}, "Said."],
            }, headers=auth())
            assert resp.status == 202
            await frames.wait_idle_after("rundown:2/1", 10)
            assert frames.order() == ["rundown:2/1"]
            await frames.wait(lambda: server.desk.done == 1, 5)
            status = await (await client.get("/rundown", headers=auth())).json()
            assert status["skipped"] == 1 and "rundown:1" in status["say"]["last_error"]
            await frames.close()

    asyncio.run(main())


def test_clear_empties_the_list_and_the_item_on_air_finishes(models: PipelineModels) -> None:
    synth = FakeSynthesizer(seconds=0.4, delay_s=0.05)

    async def main() -> None:
        async with text_app(models, synth) as (client, server):
            frames = FrameLog(server.session)
            resp = await client.post("/rundown", json={
                "items": ["One a. One b.", "Two.", "Three."], "pause_s": 0.1,
            }, headers=auth())
            assert resp.status == 202
            await frames.wait(lambda: frames.first_speech("rundown:1") is not None, 10)
            resp = await client.delete("/rundown", headers=auth())
            assert resp.status == 200
            cleared = await resp.json()
            assert cleared["cleared"] == 2 and cleared["rundown"]["next"] == []
            assert cleared["rundown"]["on_air"]["id"] == 1
            await frames.wait_idle_after("rundown:1/2", 10)
            await asyncio.sleep(1.0)
            assert frames.order() == ["rundown:1/1", "rundown:1/2"]
            status = await (await client.get("/rundown", headers=auth())).json()
            assert status["state"] == "idle" and status["done"] == 1
            # A new rundown plays after a clear.
            resp = await client.post("/rundown", json=["Four."], headers=auth())
            assert (await resp.json())["ids"] == [4]
            await frames.wait_idle_after("rundown:4/1", 10)
            await frames.close()

    asyncio.run(main())


def test_bad_rundowns_get_a_clear_4xx(models: PipelineModels, tmp_path: Path) -> None:
    synth = FakeSynthesizer()
    clip = write_wav(tmp_path / "clip.wav", speechlike(0.5))
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio" * 50)

    async def main() -> None:
        async with text_app(models, synth, max_speak_s=2.0) as (client, server):
            bad_json: list[tuple[Any, int]] = [
                ({"items": []}, 400),
                ([], 400),
                ({"items": "Hello."}, 400),
                ({"items": [{"text": "a", "audio": "clip"}]}, 400),
                ({"items": [{"words": "a"}]}, 400),
                ({"items": [{"text": "a", "colour": "red"}]}, 400),
                ({"items": [{"text": ""}]}, 400),
                ({"items": [{"text": "<b>markup</b>"}]}, 400),
                ({"items": [{"text": "ok", "pause_s": -1}]}, 400),
                ({"items": [{"text": "ok"}], "pause_s": "long"}, 400),
                ({"items": [{"audio": "clip"}]}, 400),  # JSON only: no file fields
                ({"items": ["x."] * 101}, 413),
                ({"items": [{"text": "ok"}], "extra": 1}, 400),
                ({"items": ["ok", {"text": "ok", "voice": "nope"}]}, 400),
            ]
            for body, status in bad_json:
                resp = await client.post("/rundown", json=body, headers=auth())
                text = await resp.text()
                assert resp.status == status, (body, resp.status, text)
                assert one_line(text), text
            resp = await client.post("/rundown", data=b"{not json", headers=auth())
            assert resp.status == 400
            resp = await client.post("/rundown", data=b'["caf\xe9"]', headers=auth())
            assert resp.status == 400 and "UTF-8" in await resp.text()
            forms: list[tuple[Any, dict[str, Path], int, str]] = [
                ({"items": [{"audio": "other"}]}, {"clip": clip}, 400, "other"),
                ({"items": ["Hello."]}, {"clip": clip}, 400, "not used"),
                ({"items": [{"audio": "junk"}]}, {"junk": junk}, 415, "junk.wav"),
                ({"items": [{"audio": "a"}, {"audio": "b"}, {"audio": "c"}, {"audio": "d"},
                            {"audio": "e"}]},
                 {k: clip for k in "abcde"}, 413, "max_speak_s"),
            ]
            for body, files, status, words in forms:
                resp = await client.post("/rundown", data=rundown_form(body, files),
                                         headers=auth())
                text = await resp.text()
                assert resp.status == status and words in text, (body, resp.status, text)
                assert one_line(text), text
            form = aiohttp.FormData()
            form.add_field("clip", clip.read_bytes(), filename="clip.wav")
            resp = await client.post("/rundown", data=form, headers=auth())
            assert resp.status == 400 and "'rundown'" in await resp.text()
            for method in ("GET", "POST", "DELETE"):
                for headers in ({}, {"Authorization": "Bearer wrong"}):
                    resp = await client.request(method, "/rundown", json=["Hi."], headers=headers)
                    assert resp.status == 401, method
            assert synth.calls == []
            assert (await client.get("/healthz")).status == 200
            status = await (await client.get("/rundown", headers=auth())).json()
            assert status["state"] == "idle" and status["next"] == []

    asyncio.run(main())


def test_say_and_rundown_with_the_real_engine_in_order(models: PipelineModels) -> None:
    """Done-when: /say and /rundown on loopback with the real TTS; speech frames in order."""
    tts = real_tts_config()

    async def main() -> None:
        async with text_app(models, tts=tts) as (client, server):
            frames = FrameLog(server.session)
            resp = await client.post("/rundown", json={
                "items": ["Good evening. Here are the headlines.", "That is all for tonight."],
                "pause_s": 0.3,
            }, headers=auth())
            assert resp.status == 202, await resp.text()
            await frames.wait(lambda: frames.first_speech("rundown:1") is not None, 15)
            resp = await client.post("/say", json={"text": "This just in."}, headers=auth())
            assert resp.status == 202, await resp.text()
            await frames.wait_idle_after("rundown:2/1", 30)
            assert frames.order() == ["rundown:1/1", "rundown:1/2", "say:1/1", "rundown:2/1"]
            await frames.close()

    asyncio.run(main())
