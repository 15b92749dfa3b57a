"""Recording the broadcast: muxed from the shared encoder's packets, with the timeline viewers get.

A flash engine makes the picture bright while the audio is loud, so the sound's onset can be
found in the recorded video and audio and in what a live viewer received: the recording must
have the broadcast's duration (±1 frame) and the viewer's A/V offset. A killed server leaves a
file that plays; Ctrl-C finalises it.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
from pipeline_helpers import speechlike
from stream_helpers import auth, push_paced, running_app
from test_stream_webrtc import (
    connect_viewer,
    flash_models,
    onset,
    rtp_origin,
    sender_time,
)

from anchor.avatar.bundle import AvatarBundle
from anchor.config import BroadcastConfig

REPO = Path(__file__).resolve().parents[2]


def file_onsets(path: Path) -> tuple[int, float, float]:
    """(video frames, first bright frame time, first loud audio time) of a recording (s)."""
    with av.open(str(path)) as c:
        video = [(float(f.time), float(f.to_ndarray(format="gray").mean()))
                 for f in c.decode(video=0)]
    with av.open(str(path)) as c:
        audio = []
        for f in c.decode(audio=0):
            x = f.to_ndarray().astype(np.float64)
            if x.dtype.kind != "f" or np.abs(x).max() > 1.5:
                x = x / 32768.0
            audio.append((float(f.time), float(np.sqrt(np.mean(x**2)))))
    t_video = next(t for t, level in video if level > 128.0)
    t_audio = next(t for t, level in audio if level > 0.02)
    return len(video), t_video, t_audio


@pytest.mark.parametrize("name", ["show.mp4", "show.webm"])
def test_recording_matches_what_a_viewer_received(tmp_path: Path, name: str) -> None:
    models = flash_models()
    x = np.concatenate([np.zeros(8000, np.float32), speechlike(1.0), np.zeros(8000, np.float32)])

    async def main() -> None:
        cfg = BroadcastConfig(record_dir=str(tmp_path))
        async with running_app(models, broadcast=cfg) as (client, server):
            pc, got, _stamps = await connect_viewer(client)
            async with asyncio.timeout(15):
                while len(got["video"]) < 5:
                    await asyncio.sleep(0.05)
            assert (await client.post("/record", json={"name": name})).status == 401
            resp = await client.post("/record", json={"name": "../evil.mp4"}, headers=auth())
            assert resp.status == 400
            resp = await client.post("/record", json={"name": name}, headers=auth())
            assert resp.status == 201, await resp.text()
            assert (await client.post("/record", json={"name": "b.mp4"}, headers=auth())).status == 409
            await asyncio.sleep(0.6)
            t_push = await push_paced(client, x)
            await asyncio.sleep(0.6)
            recorder = server.recorder
            assert recorder is not None
            first = recorder._first_index
            status = await (await client.delete("/record", headers=auth())).json()
            assert (await client.delete("/record", headers=auth())).status == 404
            peer = next(iter(server.peers.peers.values()))
            sent = [i for i in peer.send_log.video if first <= i < first + status["frames"]]
            await pc.close()
            for t in pc._anchor_tasks:  # type: ignore[attr-defined]
                t.cancel()

            frames, t_video, t_audio = file_onsets(tmp_path / name)
            assert frames == status["frames"] and status["dropped_frames"] == 0
            # the recording spans what was broadcast while it ran, frame for frame (±1)
            assert abs(len(sent) - frames) <= 1
            assert status["seconds"] > 2.0
            recorded_offset = t_video - t_audio
            # what the viewer experienced: its onsets mapped through the RTCP sender reports
            reports = pc._anchor_reports  # type: ignore[attr-defined]
            _tv, pts_video = onset(got["video"], 128.0, t_push)
            _ta, pts_audio = onset(got["audio"], 0.02, t_push)
            viewer_offset = sender_time(
                pts_video + rtp_origin(pc, "video"), reports["video"][-1], 90000
            ) - sender_time(pts_audio + rtp_origin(pc, "audio"), reports["audio"][-1], 48000)
            assert abs(recorded_offset) <= 0.040, f"recorded A/V offset {recorded_offset:.3f} s"
            assert abs(recorded_offset - viewer_offset) <= 0.045, (recorded_offset, viewer_offset)

    asyncio.run(main())


def start_serve(bundle: AvatarBundle, record: Path, tmp_path: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "ANCHOR_TOKEN": "t", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "anchor.cli", "serve", "--avatar", str(bundle.path), "--port", "0",
         "--record", str(record)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    for line in proc.stdout:
        if "anchor: serving" in line:
            return proc
        assert time.monotonic() < deadline, "anchor serve did not start"
    raise AssertionError(f"anchor serve exited: {proc.wait()}")


def test_a_killed_server_leaves_a_playable_recording_and_ctrl_c_finalises_it(
    tiny_bundle: AvatarBundle, tmp_path: Path
) -> None:
    killed = tmp_path / "killed.mp4"
    proc = start_serve(tiny_bundle, killed, tmp_path)
    time.sleep(4.5)  # two keyframe fragments (every 2 s) and some
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with av.open(str(killed)) as c:
        frames = sum(1 for _ in c.decode(video=0))
    assert frames >= 50  # everything up to the last complete fragment plays

    finished = tmp_path / "finished.mp4"
    proc = start_serve(tiny_bundle, finished, tmp_path)
    time.sleep(3.0)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    with av.open(str(finished)) as c:
        frames = sum(1 for _ in c.decode(video=0))
    with av.open(str(finished)) as c:
        audio_s = sum(f.samples for f in c.decode(audio=0)) / 48000
    # the log's frame count (what was muxed) is what plays, and audio runs as long
    logged = re.findall(r"closed: (\d+) frames", out)
    if logged:
        assert frames == int(logged[-1])
    assert frames >= 50 and abs(audio_s - frames / 25) <= 0.08
