"""`anchor serve --mic` and `anchor push --mic` against a real (virtual) microphone.

A private PulseAudio daemon with a null sink provides an input device that delivers silence at
real-time pace (see ENVIRONMENT.md); the server and the push client run as subprocesses so
PortAudio enumerates that device. Skips when pulseaudio or PortAudio is not installed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from tiny_bundle import make_tiny_bundle

pytestmark = pytest.mark.slow


@pytest.fixture()
def pulse_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    if shutil.which("pulseaudio") is None:
        pytest.skip("needs pulseaudio for a virtual microphone (apt-get install pulseaudio)")
    try:
        import sounddevice  # noqa: F401
    except (ImportError, OSError) as exc:
        pytest.skip(f"needs sounddevice with PortAudio ({exc})")
    run, home = tmp_path / "run", tmp_path / "home"
    run.mkdir()
    home.mkdir()
    env = {**os.environ, "XDG_RUNTIME_DIR": str(run), "HOME": str(home)}
    daemon = subprocess.Popen(
        ["pulseaudio", "--exit-idle-time=-1", "-n", "--load=module-null-sink sink_name=vsink",
         "--load=module-native-protocol-unix", "--log-level=error"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not (run / "pulse" / "native").exists():
            if time.monotonic() > deadline or daemon.poll() is not None:
                pytest.skip("pulseaudio did not start")
            time.sleep(0.05)
        yield env
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)


def anchor_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "anchor.cli", *args]


def test_serve_mic_and_busy_push_mic(pulse_env: dict[str, str], tmp_path: Path) -> None:
    bundle = make_tiny_bundle(tmp_path / "tiny")
    env = {**pulse_env, "ANCHOR_TOKEN": "tok"}
    server = subprocess.Popen(
        anchor_cmd("serve", "--avatar", str(bundle), "--port", "0", "--mic"),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        url = None
        assert server.stdout is not None
        for line in server.stdout:
            if "serving" in line:
                url = line.split(" at ", 1)[1].split()[0]
                break
        assert url, "server did not start"
        health: dict[str, object] = {}
        deadline = time.monotonic() + 15
        while health.get("input") != "server-mic" and time.monotonic() < deadline:
            with urllib.request.urlopen(url + "healthz", timeout=5) as resp:
                health = json.load(resp)
            time.sleep(0.2)
        assert health.get("input") == "server-mic"  # the microphone is the live input
        # a second pusher (this machine's microphone over the websocket) is told it is busy
        ws_url = url.replace("http://", "ws://") + "ws/audio"
        push = subprocess.run(
            anchor_cmd("push", "--mic", "--url", ws_url), env=env, capture_output=True,
            text=True, timeout=60,
        )
        assert push.returncode == 2
        err = push.stderr.strip().splitlines()[-1]
        assert err.startswith("anchor: error:") and "1013" in err and "busy" in err
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    assert server.returncode == 0
