"""How many viewers one anchor serves: fps per viewer and the anchor's own output against N.

A real `anchor serve` runs in its own process (so its CPU and RSS are its own), speaking
continuously: a websocket pusher streams speech in real time, so the renderer is busy as on
air. For N in (1, 5, 10, 20, 50), N lightweight loopback viewers (benchmarks/viewer_clients.py:
they depacketize and reassemble but never decode) connect in a second process and are measured
for `seconds`. Recorded per N: each viewer's fps (min / mean), the anchor's output fps (/healthz,
sampled every 0.5 s, min over the span), the server's CPU (core-seconds per second) and peak RSS,
the clients' own CPU, the shared encoder's time per frame and the viewers' lost frames.

Through an SFU: when Janus is installed and the publish path is available, the same N viewers
watch through Janus while anchor publishes one stream (otherwise the reason is recorded).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from anchor.config import AnchorConfig
from benchmarks.common import BenchOptions, pyplot, save_figure
from benchmarks.inputs import speech_audio

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
TOKEN = "bench-viewers"
COUNTS = (1, 5, 10, 20, 50)


def plan(opts: BenchOptions) -> tuple[tuple[int, ...], float]:
    """(viewer counts, seconds measured per count)."""
    if opts.tiny:
        return (1, 2), 2.0
    if opts.quick:
        return COUNTS, 10.0
    return COUNTS, 60.0


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServerProcess:
    """`anchor serve` on a free loopback port, in its own process."""

    def __init__(self, avatar: Path | None, extra: list[str],
                 serve_args: list[str] | None = None) -> None:
        args = [sys.executable, "-m", "anchor.cli", *extra, "serve", "--port", "0",
                *(serve_args or [])]
        if avatar is not None:
            args += ["--avatar", str(avatar)]
        env = {**os.environ, "ANCHOR_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
        # the server's log lives as long as the process: closed in stop()
        self.log = tempfile.NamedTemporaryFile("w+", prefix="anchor-serve-", suffix=".log")  # noqa: SIM115
        self.proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True)
        self.url = ""

    def wait_ready(self, timeout_s: float = 120.0) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        for line in self.proc.stdout:
            if "anchor: serving" in line:
                self.url = line.split(" at ")[1].split()[0].rstrip("/")
                return self.url
            if time.monotonic() > deadline:
                break
        self.log.seek(0)
        raise RuntimeError(f"anchor serve did not start: {self.log.read()[-2000:]}")

    def cpu_s(self) -> float:
        return process_cpu_s(self.proc.pid)

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


async def push_speech(url: str, audio: np.ndarray, stop: asyncio.Event) -> None:
    """Speech in real time over /ws/audio (20 ms chunks on absolute deadlines), looping."""
    import aiohttp

    ws_url = url.replace("http://", "ws://") + f"/ws/audio?token={TOKEN}"
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    step = 320 * 2
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url) as ws:
        await ws.send_str('{"sample_rate": 16000}')
        await ws.receive_json(timeout=10)
        loop = asyncio.get_running_loop()
        t0, k = loop.time(), 0
        while not stop.is_set():
            i = (k * step) % (len(pcm) - step)
            await ws.send_bytes(pcm[i : i + step])
            k += 1
            await asyncio.sleep(max(0.0, t0 + k * 0.02 - loop.time()))


async def sample(server: ServerProcess, stop: asyncio.Event, out: list[dict[str, Any]],
                 others: dict[str, int]) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            t = time.monotonic()
            with contextlib.suppress(Exception):
                async with session.get(f"{server.url}/healthz") as resp:
                    health = await resp.json()
                out.append({"t": t, "cpu_s": server.cpu_s(), "rss_mb": server.rss_mb(),
                            "fps": health.get("fps", 0.0), "broadcast": health.get("broadcast", {}),
                            "others": {k: process_cpu_s(pid) for k, pid in others.items()}})
            await asyncio.sleep(0.5)


async def measure(server: ServerProcess, n: int, seconds: float, audio: np.ndarray,
                  client_args: list[str], others: dict[str, int] | None = None) -> dict[str, Any]:
    """N viewers (`python -m CLIENT_ARGS... N SECONDS --json OUT`) against the running server;
    `others` are more processes whose CPU to report (an SFU)."""
    stop = asyncio.Event()
    samples: list[dict[str, Any]] = []
    others = others or {}
    tasks = [asyncio.create_task(push_speech(server.url, audio, stop)),
             asyncio.create_task(sample(server, stop, samples, others))]
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", *client_args, str(n), str(seconds), "--json", out.name,
            cwd=REPO, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        _, err = await proc.communicate()
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        if proc.returncode != 0:
            raise RuntimeError(f"viewer clients failed: {err.decode()[-1000:]}")
        result = json.loads(Path(out.name).read_text())
    t0, t1 = result["t0"], result["t1"]
    inside = [s for s in samples if t0 <= s["t"] <= t1] or samples
    first, last = inside[0], inside[-1]
    span = max(1e-9, last["t"] - first["t"])
    b0, b1 = first["broadcast"], last["broadcast"]
    return {
        "viewers": n,
        "connected": result["connected"],
        "viewer_fps_min": result["fps_min"],
        "viewer_fps_mean": result["fps_mean"],
        "anchor_fps_min": min(s["fps"] for s in inside),
        "server_cpu_cores": round((last["cpu_s"] - first["cpu_s"]) / span, 3),
        "server_rss_mb_max": round(max(s["rss_mb"] for s in inside), 1),
        "client_cpu_cores": result["client_cpu_s_per_s"],
        "encode_ms": b1.get("encode_ms"),
        "viewer_video_dropped": b1.get("viewer_video_dropped", 0) - b0.get("viewer_video_dropped", 0),
        "evictions": b1.get("evictions", 0),
        "seconds": result["seconds"],
        "per_viewer_fps": [v["fps"] for v in result["per_viewer"]],
        **{f"{k}_cpu_cores": round((last["others"][k] - first["others"][k]) / span, 3)
           for k in others},
    }


def run(cfg: AnchorConfig, opts: BenchOptions) -> dict[str, Any]:
    counts, seconds = plan(opts)
    audio, source = speech_audio(30.0, cfg.audio.sample_rate)
    extra = ["--set", f"broadcast.max_viewers={max(counts) + 10}"]
    direct: list[dict[str, Any]] = []
    server = ServerProcess(opts.avatar, extra)
    try:
        url = server.wait_ready()
        log.info("viewers: anchor serving at %s", url)
        for n in counts:
            log.info("viewers: %d direct viewers for %.0f s", n, seconds)
            row = asyncio.run(measure(server, n, seconds, audio,
                                      ["benchmarks.viewer_clients", url]))
            log.info("viewers: %d -> viewer fps min %.1f, anchor fps min %.1f, server %.2f cores",
                     n, row["viewer_fps_min"], row["anchor_fps_min"], row["server_cpu_cores"])
            direct.append(row)
    finally:
        server.stop()
    return {
        "speech": source,
        "avatar": str(opts.avatar) if opts.avatar else "the committed default avatar",
        "seconds_per_count": seconds,
        "clients": "benchmarks/viewer_clients.py: aiortc receivers, depacketize, no decode",
        "direct": direct,
        "sfu": sfu_figures(cfg, opts, counts, seconds, audio),
    }


def sfu_figures(cfg: AnchorConfig, opts: BenchOptions, counts: tuple[int, ...], seconds: float,
                audio: np.ndarray) -> dict[str, Any]:
    """The same viewers through Janus (filled in where Janus and the publisher exist)."""
    try:
        from benchmarks.sfu_bench import run_sfu
    except ImportError:  # a checkout without the publisher
        return {"skipped": True, "reason": "the SFU benchmark is not available in this checkout"}
    result: dict[str, Any] = run_sfu(cfg, opts, counts, seconds, audio)
    return result


def summary(figures: dict[str, Any]) -> str:
    lines = []
    for mode in ("direct", "sfu"):
        rows = figures.get(mode)
        if not isinstance(rows, list):
            if isinstance(rows, dict) and rows.get("skipped"):
                lines.append(f"{mode}: skipped ({rows.get('reason')})")
            continue
        lines.append(f"{mode}:")
        lines.append(f"{'N':>4} {'viewer fps min':>14} {'mean':>6} {'anchor fps min':>14} "
                     f"{'anchor cores':>12} {'RSS MB':>7} {'client cores':>12} {'encode ms':>9}"
                     f"{' janus cores':>12}")
        for r in rows:
            janus = r.get("janus_cpu_cores")
            lines.append(
                f"{r['viewers']:>4} {r['viewer_fps_min']:>14.1f} {r['viewer_fps_mean']:>6.1f} "
                f"{r['anchor_fps_min']:>14.1f} {r['server_cpu_cores']:>12.2f} "
                f"{r['server_rss_mb_max']:>7.0f} {r['client_cpu_cores']:>12.2f} "
                f"{(r['encode_ms'] or 0):>9.1f}" + (f"{janus:>12.2f}" if janus is not None else "")
            )
    return "\n".join(lines)


def plot(figures: dict[str, Any], out_dir: Path) -> list[Path]:
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for mode, style in (("direct", "-"), ("sfu", "--")):
        rows = figures.get(mode)
        if not isinstance(rows, list):
            continue
        ns = [r["viewers"] for r in rows]
        ax1.plot(ns, [r["viewer_fps_min"] for r in rows], marker="o", ls=style,
                 label=f"{mode}: slowest viewer")
        ax1.plot(ns, [r["anchor_fps_min"] for r in rows], marker="^", ls=style,
                 label=f"{mode}: anchor output")
        ax2.plot(ns, [r["server_cpu_cores"] for r in rows], marker="o", ls=style,
                 label=f"{mode}: anchor CPU (cores)")
    ax1.axhline(24, color="0.6", ls=":")
    ax1.set_xlabel("viewers")
    ax1.set_ylabel("fps (min over the run)")
    ax1.legend()
    ax2.set_xlabel("viewers")
    ax2.set_ylabel("cores")
    ax2.legend()
    fig.tight_layout()
    return [save_figure(fig, out_dir / "viewers.png")]
