"""`anchor push (FILE | --mic) --url ws://HOST:PORT/ws/audio [--token T]`.

Streams audio to a running server's websocket at real-time pace: 20 ms PCM16 chunks sent against
absolute deadlines (a file), or as the microphone delivers them (--mic).
"""

from __future__ import annotations

import argparse
import logging

from anchor.config import AnchorConfig

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("file", nargs="?", help="audio file to stream (any format PyAV decodes)")
    source.add_argument("--mic", action="store_true", help="stream this machine's microphone")
    parser.add_argument(
        "--url", default="ws://127.0.0.1:8080/ws/audio", help="the server's /ws/audio address"
    )
    parser.add_argument("--token", help="bearer token (default: $ANCHOR_TOKEN)")
    parser.add_argument("--rate", type=int, default=16000, help="sample rate to send (Hz)")


def run(args: argparse.Namespace, cfg: AnchorConfig) -> int:
    import asyncio
    import os

    from anchor.errors import StreamError
    from anchor.stream.auth import ENV_TOKEN
    from anchor.stream.push import push_file, push_microphone

    token = args.token or os.environ.get(ENV_TOKEN, "")
    if not token:
        raise StreamError(f"pushing needs the server's token: --token T or ${ENV_TOKEN}")
    if args.mic:
        seconds = asyncio.run(push_microphone(args.url, token, args.rate))
    else:
        seconds = asyncio.run(push_file(args.file, args.url, token, args.rate))
    print(f"anchor: pushed {seconds:.2f} s of audio to {args.url}")
    return 0
