"""How many channels one `anchor serve` holds at 25 fps, each speaking its own audio.

A real server runs in its own process with N channels (`--avatar cK=BUNDLE` for K < N; the
channels' renderer calls share one worker thread). Every channel gets its own websocket pusher
streaming speech in real time (a different stretch of the recording each) and one lightweight
loopback viewer (benchmarks/viewer_clients.py: depacketizes, never decodes) in its own process.
Per N: each channel's viewer fps and its anchor's output fps (/c/NAME/healthz, min over the
span), the server's CPU and RSS. N grows until a channel drops below 24.5 fps (output) or the
plan's largest N.

Renderer batching across channels is not implemented (each channel renders its own frames on
the shared worker; on this CPU batching did not raise throughput in `bench renderer`), so only
the unbatched figure exists; the result says so.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from anchor.config import AnchorConfig
from benchmarks.common import BenchOptions, pyplot, save_figure
from benchmarks.inputs import speech_audio
from benchmarks.viewers import REPO, ServerProcess, push_speech

log = logging.getLogger(__name__)

HOLD_FPS = 24.5


def plan(opts: BenchOptions) -> tuple[int, float]:
    """(largest N, seconds measured per N)."""
    if opts.tiny:
        return 1, 2.0
    if opts.quick:
        return 4, 10.0
    return 6, 30.0


async def _sample(urls: list[str], stop: asyncio.Event, out: list[tuple[float, list[float]]],
                  server: ServerProcess, cpu: list[tuple[float, float, float]]) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            t = time.monotonic()
            try:
                fps = []
                for u in urls:
                    async with session.get(f"{u}/healthz") as resp:
                        fps.append(float((await resp.json()).get("fps", 0.0)))
                out.append((t, fps))
                cpu.append((t, server.cpu_s(), server.rss_mb()))
            except Exception:  # noqa: BLE001  (a sample lost under load is just skipped)
                pass
            await asyncio.sleep(0.5)


async def measure_n(server: ServerProcess, names: list[str], seconds: float,
                    audio: np.ndarray) -> dict[str, Any]:
    urls = [f"{server.url}/c/{n}" for n in names]
    stop = asyncio.Event()
    sr = 16000
    pushers = [asyncio.create_task(push_speech(u, np.roll(audio, -int(k * 3.7 * sr)), stop))
               for k, u in enumerate(urls)]
    samples: list[tuple[float, list[float]]] = []
    cpu: list[tuple[float, float, float]] = []
    sampler = asyncio.create_task(_sample(urls, stop, samples, server, cpu))
    await asyncio.sleep(1.0)  # every channel speaking before the viewers join
    outs = [tempfile.NamedTemporaryFile(suffix=".json") for _ in urls]  # noqa: SIM115
    try:
        procs = [await asyncio.create_subprocess_exec(
            sys.executable, "-m", "benchmarks.viewer_clients", u, "1", str(seconds),
            "--json", out.name, cwd=REPO, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE) for u, out in zip(urls, outs, strict=True)]
        errs = [await p.communicate() for p in procs]
        stop.set()
        await asyncio.gather(*pushers, sampler, return_exceptions=True)
        for p, (_o, err) in zip(procs, errs, strict=True):
            if p.returncode != 0:
                raise RuntimeError(f"viewer client failed: {err.decode()[-800:]}")
        results = [json.loads(Path(o.name).read_text()) for o in outs]
    finally:
        for o in outs:
            o.close()
    t0 = max(r["t0"] for r in results)
    t1 = min(r["t1"] for r in results)
    inside = [s for s in samples if t0 <= s[0] <= t1] or samples
    c_in = [c for c in cpu if t0 <= c[0] <= t1] or cpu
    span = max(1e-9, c_in[-1][0] - c_in[0][0]) if len(c_in) > 1 else 1e-9
    anchor_fps = [min(s[1][k] for s in inside) for k in range(len(urls))] if inside else []
    return {
        "channels": len(names),
        "viewer_fps": [r["fps_min"] for r in results],
        "anchor_fps_min": anchor_fps,
        "server_cpu_cores": round((c_in[-1][1] - c_in[0][1]) / span, 3) if len(c_in) > 1 else None,
        "server_rss_mb_max": round(max(c[2] for c in c_in), 1) if c_in else None,
        "holds_25fps": bool(anchor_fps) and min(anchor_fps) >= HOLD_FPS
        and min(r["fps_min"] for r in results) >= HOLD_FPS - 0.5,
        "seconds": seconds,
    }


def run(cfg: AnchorConfig, opts: BenchOptions) -> dict[str, Any]:
    from anchor.avatar.bundle import default_avatar_path

    n_max, seconds = plan(opts)
    avatar = Path(opts.avatar) if opts.avatar else default_avatar_path()
    audio, source = speech_audio(max(30.0, seconds + 5))
    rows: list[dict[str, Any]] = []
    for n in range(1, n_max + 1):
        names = [f"c{k}" for k in range(n)]
        serve_args = [a for k in names for a in ("--avatar", f"{k}={avatar}")]
        server = ServerProcess(None, [], serve_args)
        try:
            server.wait_ready()
            log.info("channels: %d", n)
            row = asyncio.run(measure_n(server, names, seconds, audio))
        finally:
            server.stop()
        rows.append(row)
        if not row["holds_25fps"]:
            break
    held = [r["channels"] for r in rows if r["holds_25fps"]]
    return {
        "avatar": str(avatar),
        "audio": source,
        "criterion": f"every channel's output >= {HOLD_FPS} fps (its /healthz, min over the span) "
                     f"and its viewer >= {HOLD_FPS - 0.5} fps",
        "renderer": "one shared worker thread, unbatched",
        "batched": "not implemented: channels do not share renderer calls yet",
        "max_channels_unbatched": max(held) if held else 0,
        "by_channels": rows,
    }


def plot(figures: dict[str, Any], out_dir: Path) -> list[Path]:
    plt = pyplot()
    rows = figures["by_channels"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ns = [r["channels"] for r in rows]
    ax.plot(ns, [min(r["anchor_fps_min"]) if r["anchor_fps_min"] else 0 for r in rows],
            marker="o", label="worst channel output fps")
    ax.plot(ns, [min(r["viewer_fps"]) for r in rows], marker="^", label="worst viewer fps")
    ax.axhline(HOLD_FPS, color="0.5", ls="--", label=f"{HOLD_FPS} fps")
    ax.set_xlabel("channels in one server, each speaking")
    ax.set_ylabel("fps")
    ax.set_xticks(ns)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return [save_figure(fig, out_dir / "channels.png")]


def summary(figures: dict[str, Any]) -> str:
    lines = [f"{'N':>3} {'worst output fps':>17} {'worst viewer fps':>17} {'server cores':>13}"]
    for r in figures["by_channels"]:
        out = min(r["anchor_fps_min"]) if r["anchor_fps_min"] else float("nan")
        lines.append(f"{r['channels']:>3} {out:>17.2f} {min(r['viewer_fps']):>17.2f} "
                     f"{r['server_cpu_cores'] if r['server_cpu_cores'] is not None else '-':>13}")
    lines.append(f"channels holding 25 fps (unbatched, shared renderer worker): "
                 f"{figures['max_channels_unbatched']}; batched: {figures['batched']}")
    return "\n".join(lines)
