"""Text to speech in front of the anchor: how soon the first words are ready and how soon they
are on screen.

For each installed engine (festival, espeak-ng; a missing one is recorded with the package to
install):

- `first_audio_ms`: from `Synthesizer.stream(text)` to its first `Sentence`, over N short news
  items of two sentences each (the engine opened and warmed once before, as in a running server).
- `script`: the synthesis real-time factor of a three-paragraph news script (synthesis seconds
  per second of speech; below 1 is faster than it is spoken), streamed sentence by sentence.
- `live`: a real server (the aiohttp app of `anchor serve`, in process on a loopback port, on
  the avatar from --avatar or the default avatar) takes N `POST /say` requests one after the
  other; for each, the time to its 202 reply (sent once the first sentence is synthesised) and
  to the first output frame with speech from that text, then `POST /interrupt` and a return to
  idle before the next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

from anchor.config import AnchorConfig, replace_checked
from benchmarks.common import BenchOptions, percentiles, pyplot, save_figure, skipped
from benchmarks.inputs import resolve_avatar

log = logging.getLogger(__name__)

ENGINES = ("festival", "espeak-ng")
TOKEN = "bench-tts"
REQUEST_TIMEOUT_S = 20.0  # a /say whose first speech frame has not come by then counts as lost

# Short news sentences; run k speaks sentences k and k+1 (a two-sentence item).
NEWS = (
    "Good evening, here is the news.",
    "The storm that hit the coast last night has moved inland.",
    "Markets rose sharply in early trading.",
    "The city council approved the new budget on Tuesday.",
    "Police have closed the bridge while repairs continue.",
    "Our reporter is at the scene.",
    "The minister will speak to parliament tomorrow morning.",
    "Rail services are running normally again.",
    "Scientists say the summer was the warmest on record.",
    "The home team won its third match in a row.",
    "Tickets for the festival sold out within an hour.",
    "That is all for now, good night.",
)

SCRIPT = (
    "Good evening. Our top story tonight: the storm that swept across the coast overnight has "
    "left thousands of homes without power, and emergency crews are working to clear fallen "
    "trees from the main roads. Officials expect most services to be restored by tomorrow "
    "afternoon.\n\n"
    "In parliament, the finance minister presented the new budget, promising lower taxes for "
    "small businesses and more money for schools and hospitals. The opposition called the plan "
    "unrealistic, and the debate is expected to continue well into next week.\n\n"
    "And finally, in sport, the home team won its third match in a row on Saturday, beating "
    "the league leaders by two goals to one in front of a sell-out crowd. Thank you for "
    "watching, and good night."
)


@dataclasses.dataclass(frozen=True)
class Plan:
    first_audio_runs: int
    script_runs: int
    live_requests: int


def plan(opts: BenchOptions) -> Plan:
    if opts.tiny:
        return Plan(first_audio_runs=2, script_runs=1, live_requests=1)
    if opts.quick:
        return Plan(first_audio_runs=10, script_runs=3, live_requests=10)
    return Plan(first_audio_runs=30, script_runs=5, live_requests=30)


def news_item(k: int) -> str:
    return f"{NEWS[k % len(NEWS)]} {NEWS[(k + 1) % len(NEWS)]}"


# -- synthesis alone ---------------------------------------------------------------------------
def measure_synthesis(cfg: AnchorConfig, engine: str, p: Plan) -> dict[str, Any]:
    from anchor.tts import open_synthesizer

    tts = replace_checked(cfg.tts, engine=engine)
    t0 = time.perf_counter()
    synth = open_synthesizer(tts)
    open_s = time.perf_counter() - t0
    try:
        list(synth.stream(NEWS[0]))  # warm: first-call costs are paid once by a running server
        first: list[float] = []
        first_audio_s: list[float] = []
        lead_ms: list[float] = []  # silence the engine puts before the first word
        for k in range(p.first_audio_runs):
            t0 = time.perf_counter()
            it = synth.stream(news_item(k))
            sentence = next(it)
            first.append(1000 * (time.perf_counter() - t0))
            first_audio_s.append(sentence.duration_s)
            voiced = [ph.start_s for ph in sentence.phonemes if ph.arpabet != "pau"]
            lead_ms.append(1000 * (voiced[0] if voiced else sentence.duration_s))
            close = getattr(it, "close", None)
            if callable(close):
                close()  # the second sentence is never synthesised
        runs: list[dict[str, Any]] = []
        for _ in range(p.script_runs):
            synth_s = audio_s = 0.0
            sentences = 0
            first_ms = 0.0
            t0 = time.perf_counter()
            it = synth.stream(SCRIPT)
            while True:
                t1 = time.perf_counter()
                piece = next(it, None)
                if piece is None:
                    break
                if sentences == 0:
                    first_ms = 1000 * (time.perf_counter() - t0)
                synth_s += time.perf_counter() - t1
                audio_s += piece.duration_s
                sentences += 1
            runs.append({"sentences": sentences, "synthesis_s": synth_s, "audio_s": audio_s,
                         "rtf": synth_s / audio_s if audio_s > 0 else 0.0,
                         "first_sentence_ms": first_ms})
        return {
            "voice": synth.voice,
            "open_s": open_s,
            "first_audio_ms": percentiles(first),
            "first_audio_runs_ms": first,
            "first_sentence_audio_s": percentiles(first_audio_s),
            "leading_silence_ms": percentiles(lead_ms),
            "script": {
                "characters": len(SCRIPT),
                "sentences": runs[0]["sentences"] if runs else 0,
                "audio_s": runs[0]["audio_s"] if runs else 0.0,
                "rtf": percentiles([r["rtf"] for r in runs]),
                "first_sentence_ms": percentiles([r["first_sentence_ms"] for r in runs]),
                "runs": runs,
            },
        }
    finally:
        synth.close()


# -- live: POST /say on a running server -------------------------------------------------------
class FrameLog:
    """(arrival, source, speech) of every frame the session shows from now on (a viewer's queue
    is latest-wins, so it is read all the time)."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.sub = session.subscribe()
        self.frames: list[tuple[float, str, bool]] = []
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        from anchor.pipeline.queues import QueueClosed

        with contextlib.suppress(QueueClosed):
            while True:
                f = await self.sub.video.get()
                self.frames.append((time.monotonic(), f.source, bool(f.speech)))

    def first_speech(self, prefix: str, since: float) -> float | None:
        for t, src, speech in self.frames:
            if t >= since and speech and src.startswith(prefix):
                return t
        return None

    def idle_since(self, since: float, frames: int) -> bool:
        """At least `frames` frames since `since`, the last of them idle."""
        recent = [(src, speech) for t, src, speech in self.frames if t >= since]
        return len(recent) >= frames and all(not src and not sp for src, sp in recent[-frames:])

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self.session.unsubscribe(self.sub)


async def wait_for(cond: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def _live(cfg: AnchorConfig, bundle_path: Path, engine: str, n: int) -> dict[str, Any]:
    import aiohttp
    from aiohttp import web

    from anchor.pipeline.models import load_models
    from anchor.pipeline.session import AnchorSession
    from anchor.stream.app import AnchorServer

    server_cfg = cfg.server
    models = load_models(bundle_path, dataclasses.replace(cfg, server=server_cfg), live=True)
    session = AnchorSession(models, server_cfg)
    server = AnchorServer(session, server_cfg, TOKEN,
                          tts=replace_checked(cfg.tts, engine=engine))
    runner = web.AppRunner(server.app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    frames = FrameLog(session)
    reply_ms: list[float] = []
    first_ms: list[float] = []
    lost = 0
    rows = []
    try:
        t0 = time.perf_counter()
        synth = await server.desk.synthesizer()  # as a server has after its first /say
        open_s = time.perf_counter() - t0
        async with aiohttp.ClientSession() as http:
            for k in range(-1, n):  # request -1 warms the path and is not counted
                await wait_for(lambda: frames.idle_since(time.monotonic() - 0.2, 3), 5.0)
                t0 = time.monotonic()
                async with http.post(f"{url}/say", json={"text": news_item(max(k, 0))},
                                     headers=headers) as resp:
                    body = await resp.json()
                    status = resp.status
                t_reply = time.monotonic()
                if status != 202:
                    raise RuntimeError(f"POST /say answered {status}: {body}")
                prefix = f"{body['id']}/"
                seen = await wait_for(lambda p=prefix, s=t0: frames.first_speech(p, s) is not None,
                                      REQUEST_TIMEOUT_S)
                t_first = frames.first_speech(prefix, t0)
                async with http.post(f"{url}/interrupt", headers=headers) as resp:
                    await resp.read()
                if k < 0:
                    continue
                row: dict[str, Any] = {"request": k, "id": body["id"],
                                       "reply_ms": 1000 * (t_reply - t0)}
                reply_ms.append(row["reply_ms"])
                if seen and t_first is not None:
                    row["first_speech_frame_ms"] = 1000 * (t_first - t0)
                    first_ms.append(row["first_speech_frame_ms"])
                else:
                    lost += 1
                rows.append(row)
        return {
            "engine": getattr(synth, "engine", engine),
            "voice": getattr(synth, "voice", ""),
            "open_s": open_s,
            "requests": n,
            "lost": lost,
            "reply_ms": percentiles(reply_ms),
            "first_speech_frame_ms": percentiles(first_ms),
            "lookahead_ms": models.lookahead_ms,
            "hop_frames": models.streaming.hop_frames,
            "live_latency_target_ms": 1000 * session.live_latency_s,
            "by_request": rows,
        }
    finally:
        await frames.close()
        await runner.cleanup()


def measure_live(cfg: AnchorConfig, bundle_path: Path, engine: str, n: int) -> dict[str, Any]:
    return asyncio.run(_live(cfg, bundle_path, engine, n))


# -- the suite ---------------------------------------------------------------------------------
def run(cfg: AnchorConfig, opts: BenchOptions) -> dict[str, Any]:
    from anchor.tts.engines import INSTALL, engine_installed

    p = plan(opts)
    installed = [e for e in ENGINES if engine_installed(e)]
    if not installed:
        return skipped("no TTS engine is installed: " + " or ".join(INSTALL[e] for e in ENGINES))
    avatar = resolve_avatar(opts.avatar, cfg, seed=opts.seed)
    engines: dict[str, Any] = {}
    for engine in ENGINES:
        if engine not in installed:
            engines[engine] = skipped(f"{engine} is not installed: {INSTALL[engine]}")
            continue
        log.info("tts: %s: %d first-audio runs, %d script runs", engine, p.first_audio_runs,
                 p.script_runs)
        figures = measure_synthesis(cfg, engine, p)
        log.info("tts: %s: %d live /say requests", engine, p.live_requests)
        figures["live"] = measure_live(cfg, avatar.bundle.path, engine, p.live_requests)
        engines[engine] = figures
    return {
        "avatar": avatar.describe(),
        "plan": dataclasses.asdict(p),
        "news_item": "two short news sentences (first_audio: time to the first one)",
        "script_characters": len(SCRIPT),
        "tts": {"rate": cfg.tts.rate, "sentence_max_chars": cfg.tts.sentence_max_chars},
        "engines": engines,
    }


def _measured(figures: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(e, f) for e, f in figures["engines"].items() if not f.get("skipped")]


def plot(figures: dict[str, Any], out_dir: Path) -> list[Path]:
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    measured = _measured(figures)
    labels = ("stream() -> first sentence", "POST /say -> 202", "POST /say -> first speech frame")
    width = 0.8 / max(1, len(measured))
    for i, (engine, f) in enumerate(measured):
        stats = (f["first_audio_ms"], f["live"]["reply_ms"], f["live"]["first_speech_frame_ms"])
        xs = [j + i * width for j in range(len(labels))]
        ax1.bar(xs, [s.get("p50", 0.0) for s in stats], width, color=f"C{i}", label=f"{engine} p50")
        ax1.scatter(xs, [s.get("p95", 0.0) for s in stats], color="k", marker="_", s=200,
                    zorder=3, label="p95" if i == 0 else None)
    ax1.set_xticks([j + width * (len(measured) - 1) / 2 for j in range(len(labels))])
    ax1.set_xticklabels(labels, fontsize=7)
    ax1.set_ylabel("ms")
    ax1.set_title("time to first words")
    ax1.legend(fontsize=7)
    names = [e for e, _f in measured]
    rtf = [max(f["script"]["rtf"].get("p50", 0.0), 1e-4) for _e, f in measured]
    bars = ax2.bar(names, rtf, color=[f"C{i}" for i in range(len(names))])
    for bar, value in zip(bars, rtf, strict=True):
        ax2.annotate(f"{value:.4f}\n({1 / value:.0f}x real time)",
                     (bar.get_x() + bar.get_width() / 2, value), ha="center", va="bottom",
                     fontsize=7)
    ax2.axhline(1.0, color="0.5", ls="--", label="real time (RTF 1)")
    ax2.set_yscale("log")
    ax2.set_ylim(min(rtf) / 3, 3.0)
    ax2.set_ylabel("real-time factor: synthesis s per s of speech (p50)")
    ax2.set_title(f"news script ({figures['script_characters']} characters)")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    return [save_figure(fig, out_dir / "tts.png")]


def summary(figures: dict[str, Any]) -> str:
    lines = [f"{'engine':<10} {'first audio p50':>15} {'p95':>7} {'script RTF':>10} "
             f"{'/say->202 p50':>13} {'p95':>7} {'/say->speech p50':>16} {'p95':>7} {'lost':>5}"]
    for engine, f in figures["engines"].items():
        if f.get("skipped"):
            lines.append(f"{engine:<10} skipped: {f['reason']}")
            continue
        a, live = f["first_audio_ms"], f["live"]
        r, s = live["reply_ms"], live["first_speech_frame_ms"]
        lines.append(
            f"{engine:<10} {a['p50']:>12.0f} ms {a['p95']:>7.0f} {f['script']['rtf']['p50']:>10.3f} "
            f"{r.get('p50', 0.0):>10.0f} ms {r.get('p95', 0.0):>7.0f} "
            f"{s.get('p50', 0.0):>13.0f} ms {s.get('p95', 0.0):>7.0f} {live['lost']:>5}")
    measured = _measured(figures)
    if measured:
        live = measured[0][1]["live"]
        lead = ", ".join(f"{e} {f['leading_silence_ms']['p50']:.0f} ms" for e, f in measured)
        lines.append(f"leading silence before the first word (p50): {lead}")
        lines.append(f"live: {figures['plan']['live_requests']} requests per engine, each "
                     "interrupted after its first speech frame; lookahead "
                     f"{live['lookahead_ms']:.0f} ms, hop {live['hop_frames']} frames (a /say is a "
                     "file segment: it plays from the next free frame, without waiting out the "
                     f"live latency target of {live['live_latency_target_ms']:.0f} ms)")
    return "\n".join(lines)
