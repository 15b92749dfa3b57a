"""Run the server until SIGINT/SIGTERM: the app on a TCP port plus the optional inputs
(the server's microphone, a file played once at start)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Sequence
from pathlib import Path

from aiohttp import web

from anchor.config import BroadcastConfig, PlannerConfig, ServerConfig, TtsConfig
from anchor.errors import StreamError
from anchor.pipeline.models import PipelineModels
from anchor.pipeline.session import AnchorSession
from anchor.stream.app import AnchorServer

log = logging.getLogger(__name__)


async def microphone_input(session: AnchorSession, sample_rate: int = 16000) -> None:
    """The server's own microphone as a live input, for as long as the server runs."""
    from anchor.stream.mic import open_microphone

    async with open_microphone(sample_rate) as blocks:
        inp = session.open_input("server-mic", sample_rate, live=True)
        try:
            async for block in blocks:
                await inp.push(block)
        finally:
            await inp.close()


async def serve(
    models: PipelineModels | Sequence[tuple[str, PipelineModels]],
    cfg: ServerConfig,
    token: str,
    *,
    mic: bool = False,
    play: Path | None = None,
    on_ready: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
    broadcast: BroadcastConfig | None = None,
    record: Path | None = None,
    publish: Sequence[str] = (),
    tts: TtsConfig | None = None,
    planner: PlannerConfig | None = None,
) -> None:
    """Serve one avatar (`models`) or several channels ((name, models), ...; the first is
    also served at /). --mic, --play, --record and --publish go to the first channel."""
    from concurrent.futures import ThreadPoolExecutor

    from anchor.stream.channels import mount_channels
    from anchor.stream.publish import PublishTarget, RtpPublisher

    channels = [("main", models)] if isinstance(models, PipelineModels) else list(models)
    targets = [PublishTarget.parse(u) for u in publish]  # a bad URL fails before anything starts
    if mic:
        from anchor.stream.mic import check_input_device

        check_input_device()  # fail with one line before anything starts
    render_pool = ThreadPoolExecutor(1, thread_name_prefix="anchor-render") \
        if len(channels) > 1 else None
    servers = []
    for i, (name, m) in enumerate(channels):
        session = AnchorSession(m, cfg, render_executor=render_pool, planner=planner)
        servers.append((name, AnchorServer(session, cfg, token, broadcast=broadcast,
                                           record=record if i == 0 else None, tts=tts)))
    server = servers[0][1]
    session = server.session
    # Channels given by name (anchor serve --avatar NAME=...) answer at /c/NAME/ too.
    app = server.app if isinstance(models, PipelineModels) else mount_channels(servers)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, cfg.host, cfg.port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        if render_pool is not None:
            render_pool.shutdown(wait=True)
        raise StreamError(f"cannot listen on {cfg.host}:{cfg.port} ({exc.strerror or exc})") from None
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    tasks: list[asyncio.Task[None]] = []
    publishers: list[RtpPublisher] = []
    try:
        for target in targets:
            publisher = RtpPublisher(server.encoder, session.clock, target)
            await publisher.start()
            publishers.append(publisher)
        if play is not None:
            await session.speak_file(play)
        if mic:
            tasks.append(asyncio.create_task(microphone_input(session)))
        host = "127.0.0.1" if cfg.host in ("0.0.0.0", "") else cfg.host
        port = runner.addresses[0][1] if runner.addresses else cfg.port
        if on_ready is not None:
            on_ready(f"http://{host}:{port}/")
        waiter = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        for t in done:
            failure = None if t is waiter else t.exception()
            if failure is not None:
                raise failure
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for publisher in publishers:
            await publisher.aclose()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        await runner.cleanup()
        if render_pool is not None:
            render_pool.shutdown(wait=True)
