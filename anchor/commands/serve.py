"""`anchor serve [--avatar [NAME=]BUNDLE ...] [--host H] [--port P] [--mic | --play FILE]
[--record FILE] [--publish URL ...]`.

Streams the avatar to browsers (web client at /, WebRTC at /offer, WHEP at /whep) and takes
speech from the websocket (/ws/audio), uploads (/speak), browser microphones, the server's
microphone (--mic) or a file played at start (--play).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
from pathlib import Path

from anchor.config import AnchorConfig

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--avatar", action="append", metavar="[NAME=]BUNDLE",
                        help="avatar bundle directory (default: the shipped avatar); repeat as "
                             "NAME=BUNDLE for several channels, served at /c/NAME/ (the first "
                             "also at /)")
    parser.add_argument("--host", help="address to listen on (default: server.host, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: server.port, 8080)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--mic", action="store_true", help="speak from this machine's microphone")
    source.add_argument("--play", metavar="FILE", help="speak this audio file once at start")
    parser.add_argument("--publish", metavar="URL", action="append",
                        help="also publish the one encoded stream as RTP to an SFU, e.g. "
                             "rtp://127.0.0.1:5004 (Janus streaming plugin; README 'Serving a "
                             "large audience'); repeat for several (default: broadcast.publish)")
    parser.add_argument("--record", metavar="FILE",
                        help="record the broadcast as sent: FILE.mp4 (H.264 + Opus, fragmented) "
                             "or FILE.webm/.mkv (VP8 + Opus); finalised on Ctrl-C")


def run(args: argparse.Namespace, cfg: AnchorConfig) -> int:
    from anchor.errors import StreamError
    from anchor.pipeline.models import live_latency_ms, load_models
    from anchor.stream.auth import ENV_TOKEN, resolve_token
    from anchor.stream.runner import serve

    server = cfg.server
    if args.host:
        server = dataclasses.replace(server, host=args.host)
    if args.port is not None:
        server = dataclasses.replace(server, port=args.port)
    from anchor.stream.publish import PublishTarget
    from anchor.stream.record import check_record_path

    publish = tuple(args.publish) if args.publish else cfg.broadcast.publish
    targets = [PublishTarget.parse(u) for u in publish]  # one-line error before models load

    record = Path(args.record) if args.record else None
    if record is not None:
        check_record_path(record)  # a bad path fails in one line before anything starts
    play = Path(args.play) if args.play else None
    if play is not None and not play.is_file():
        raise StreamError(f"--play {play}: no such file")
    from anchor.stream.channels import channel_name_for, parse_channels

    specs = parse_channels(args.avatar)  # one-line error before any model loads
    token, origin = resolve_token(server.token)
    channels = []
    for spec in specs:
        m = load_models(spec.avatar, dataclasses.replace(cfg, server=server), live=True)
        channels.append((channel_name_for(spec, m.name), m))
    models = channels[0][1]

    def ready(url: str) -> None:
        latency = live_latency_ms(models, server.latency_margin_ms)  # measured once, cached
        print(f"anchor: serving {models.name!r} at {url}  (WHEP: {url}whep)", flush=True)
        if len(channels) > 1:
            for name, m in channels:
                print(f"anchor: channel {name!r} ({m.name}) at {url}c/{name}/  "
                      f"(WHEP: {url}c/{name}/whep)", flush=True)
        print(
            f"anchor: lookahead {models.lookahead_ms:.0f} ms, hop {models.streaming.hop_ms:.0f} ms, "
            f"live latency target {latency:.0f} ms",
            flush=True,
        )
        for target in targets:
            print(f"anchor: publishing RTP to {target.url}", flush=True)
        if origin == "generated":
            print(f"anchor: push/speak/interrupt token: {token}  (set {ENV_TOKEN} to choose one)",
                  flush=True)
        else:
            where = "server.token" if origin == "config" else f"${ENV_TOKEN}"
            print(f"anchor: push/speak/interrupt token: the value of {where}", flush=True)

    asyncio.run(serve(
        channels, server, token, mic=args.mic, play=play, on_ready=ready, broadcast=cfg.broadcast,
        record=record, publish=publish, tts=cfg.tts, planner=cfg.planner,
    ))
    print("anchor: stopped", flush=True)
    return 0
