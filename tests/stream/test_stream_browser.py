"""A real headless Chromium watches the anchor through the web client.

It opens `/`, connects over WebRTC (127.0.0.1 only), decodes video, and measures how much the
pixels in the mouth box change between frames (a canvas in the page): clearly more while speech
is pushed over the websocket than in silence, when the mouth stays still. The avatar is the
synthetic test bundle with a single template frame, so the idle picture does not move at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pipeline_helpers import make_models, speechlike
from stream_helpers import TOKEN, auth, running_app
from tiny_bundle import make_tiny_bundle

from anchor.avatar.bundle import load_avatar

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--allow-loopback-in-peer-connection",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]

pytestmark = pytest.mark.browser


def chromium_or_skip() -> Path:
    if not CHROMIUM.is_file() or not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"needs Debian chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        pytest.skip("needs the playwright Python package (the browser itself is Debian's)")
    return CHROMIUM


CLOSE_TIMEOUT_S = 15.0


@contextlib.asynccontextmanager
async def launched(pw: Any, chromium: Path, *extra: str) -> AsyncIterator[Any]:
    """A headless Chromium that is always gone afterwards. Chromium's own shutdown sometimes
    never finishes (browser.close() then waits forever, a known Chromium/Playwright hang): after
    CLOSE_TIMEOUT_S its processes, found by a tag on their command line, are killed."""
    tag = f"--anchor-test-run={uuid.uuid4().hex}"  # an unknown switch: Chromium ignores it
    browser = await pw.chromium.launch(
        executable_path=str(chromium), headless=True, args=[*FLAGS, *extra, tag]
    )
    try:
        yield browser
    finally:
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await browser.close()
        except TimeoutError:
            print(f"chromium did not close within {CLOSE_TIMEOUT_S:.0f} s; killed")
            kill_tagged(tag)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await browser.close()


def kill_tagged(tag: str) -> None:
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if tag.encode() in cmdline:
            with contextlib.suppress(OSError):
                os.kill(int(proc.name), signal.SIGKILL)


async def push_speech(client: object, seconds: float) -> None:
    x = speechlike(seconds)
    ws = await client.ws_connect("/ws/audio", headers=auth())  # type: ignore[attr-defined]
    await ws.send_str('{"sample_rate": 16000}')
    await ws.receive_json(timeout=5)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for k, i in enumerate(range(0, len(x), 320)):
        await ws.send_bytes((x[i : i + 320] * 32767).astype("<i2").tobytes())
        await asyncio.sleep(max(0.0, t0 + (k + 1) * 0.02 - loop.time()))
    await ws.close()


def test_browser_sees_the_mouth_move_only_while_speaking(tmp_path: Path) -> None:
    chromium = chromium_or_skip()
    from playwright.async_api import async_playwright

    bundle = load_avatar(
        make_tiny_bundle(tmp_path / "still", n_frames=1, frame_size=(192, 160), resolution=64,
                         template_size=128)
    )
    models = make_models(bundle)

    async def main() -> dict[str, float]:
        async with running_app(models) as (client, server), async_playwright() as pw, \
                launched(pw, chromium) as browser:
            page = await browser.new_page()
            page.on("console", lambda m: print("console:", m.text))
            await page.goto(str(client.make_url("/")))
            await page.evaluate("window.anchor.connect(false)")
            decoded = 0
            async with asyncio.timeout(30):
                while decoded == 0:
                    await asyncio.sleep(0.25)
                    decoded = await page.evaluate(
                        "window.anchor.updateStats().then(() => window.anchor.stats().framesDecoded || 0)"
                    )
            await asyncio.sleep(1.0)  # let the codec settle
            measure = "window.anchor.regionActivity(null, 1000).then(r => r.mean)"
            quiet = await page.evaluate(measure)
            pusher = asyncio.create_task(push_speech(client, 2.5))
            await asyncio.sleep(server.session.live_latency_s + 0.4)
            speaking = await page.evaluate(measure)
            await pusher
            await asyncio.sleep(server.session.live_latency_s + 0.8)  # speech and hangover over
            quiet_after = await page.evaluate(measure)
            stats = await page.evaluate("window.anchor.updateStats().then(() => window.anchor.stats())")
            return {"quiet": quiet, "speaking": speaking, "quiet_after": quiet_after,
                    "frames": stats.get("framesDecoded", 0), "latency": stats.get("latencyMs") or 0}

    r = asyncio.run(main())
    print("mouth-box activity:", r)
    assert r["frames"] > 50
    assert r["speaking"] > 0.5, r  # the mouth visibly moves (mean |change| per pixel, 0..255)
    assert r["speaking"] > 4 * max(r["quiet"], r["quiet_after"], 0.1), r
    assert r["quiet"] < 0.5 and r["quiet_after"] < 0.5, r


@pytest.mark.parametrize(("button", "source_prefix"), [("#push-mic", "browser-mic:"), ("#push-ws", "ws:")])
def test_browser_pushes_its_microphone(tmp_path: Path, button: str, source_prefix: str) -> None:
    """The client's push paths: Chromium's fake microphone plays a WAV file, sent as a WebRTC
    track (consumed with recv() as a live input) or as PCM16 over the websocket; the anchor
    speaks."""
    import wave

    chromium = chromium_or_skip()
    from playwright.async_api import async_playwright

    wav = tmp_path / "mic.wav"
    x = np.concatenate([np.zeros(8000, np.float32), speechlike(3.0)])
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((x * 32767).astype("<i2").tobytes())
    models = make_models(load_avatar(make_tiny_bundle(tmp_path / "tiny", n_frames=1)))

    async def main() -> tuple[str | None, int]:
        async with running_app(models) as (client, server), async_playwright() as pw, \
                launched(pw, chromium, f"--use-file-for-fake-audio-capture={wav}") as browser:
            page = await browser.new_page()
            await page.goto(str(client.make_url("/")))
            await page.fill("#token", "wrong")
            await page.click(button)  # a wrong token is refused with a clear message
            refused = "401" if button == "#push-mic" else "websocket closed"
            async with asyncio.timeout(15):
                while refused not in (await page.text_content("#message") or ""):
                    await asyncio.sleep(0.1)
            await page.fill("#token", TOKEN)
            await page.click(button)
            source = None
            async with asyncio.timeout(30):
                while server.session.recorder.speech_frames_out < 25:
                    source = server.session.active_input or source
                    await asyncio.sleep(0.1)
            stored = await page.evaluate("localStorage.getItem('anchor.token')")
            assert stored == TOKEN
            return source, server.session.recorder.speech_frames_out

    source, speech_frames = asyncio.run(main())
    assert source is not None and source.startswith(source_prefix)
    assert speech_frames >= 25


def test_skip_reason_is_clear_without_chromium(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    global CHROMIUM
    saved = CHROMIUM
    CHROMIUM = Path("/nonexistent/chromium")
    try:
        with pytest.raises(pytest.skip.Exception, match="needs Debian chromium"):
            chromium_or_skip()
    finally:
        CHROMIUM = saved
    assert np.isfinite(1.0)
