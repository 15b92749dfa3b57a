"""Several anchors in one server: `anchor serve --avatar news=PATH --avatar weather=PATH`.

Each channel is a whole `AnchorServer` over its own `AnchorSession`: its own input, media
clock, viewers, encoder, recorder and desk, so bad input or a renderer failure in one never
touches another. Channel NAME answers at `/c/NAME/` (web client, `/c/NAME/whep`,
`/c/NAME/ws/audio`, `/c/NAME/speak`, `/c/NAME/say` ...); the first channel also answers at the
root, as a single-avatar server does. `GET /channels.json` lists them for the web client's
picker. The channels' renderer calls share one worker thread (see AnchorSession), so N anchors
take turns on the CPU instead of each claiming a core.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from anchor.errors import StreamError

CHANNEL_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
MAX_CHANNELS = 8


@dataclass(frozen=True)
class ChannelSpec:
    """One `--avatar` argument: NAME=PATH, or PATH alone for a single channel (name "")."""

    name: str
    avatar: str | None


def parse_channels(values: Sequence[str] | None) -> list[ChannelSpec]:
    """`--avatar` values -> channels (one-line StreamError when malformed).

    No value: one channel with the default avatar. One PATH: one channel. Several: each must be
    NAME=PATH, names unique, lower-case letters, digits, '-' or '_' (they are URL paths)."""
    if not values:
        return [ChannelSpec("", None)]
    specs = []
    for v in values:
        name, sep, path = v.partition("=")
        if not sep:
            name, path = "", v
        name = name.strip()
        if sep and not CHANNEL_NAME.fullmatch(name):
            raise StreamError(f"--avatar {v!r}: channel names are 1-32 lower-case letters, "
                              "digits, '-' or '_'")
        if not path.strip():
            raise StreamError(f"--avatar {v!r}: no avatar path after '='")
        specs.append(ChannelSpec(name, path.strip()))
    if len(specs) > 1:
        unnamed = [s.avatar for s in specs if not s.name]
        if unnamed:
            raise StreamError(f"--avatar {unnamed[0]}: with several avatars each needs a channel "
                              "name, e.g. --avatar news=PATH")
        names = [s.name for s in specs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise StreamError(f"--avatar: channel {dup[0]!r} is given twice")
        if len(specs) > MAX_CHANNELS:
            raise StreamError(f"--avatar: at most {MAX_CHANNELS} channels")
    return specs


def channel_name_for(spec: ChannelSpec, model_name: str) -> str:
    """A single unnamed channel is named after its avatar (made URL-safe)."""
    if spec.name:
        return spec.name
    slug = re.sub(r"[^a-z0-9_-]+", "-", model_name.lower()).strip("-")[:32]
    return slug if slug and CHANNEL_NAME.fullmatch(slug) else "main"


def mount_channels(channels: Sequence[tuple[str, Any]]) -> web.Application:
    """The root app: the first channel's app, with every channel (the first one included, as
    a mirror of its routes) under /c/NAME/ and GET /channels.json."""
    if not channels:
        raise StreamError("no channel to serve")
    first = channels[0][1]
    root: web.Application = first.app

    async def listing(_request: web.Request) -> web.Response:
        return web.json_response({"channels": [
            {"name": name, "avatar": srv.session.models.name, "path": f"/c/{name}/",
             "running": srv.session.running, "viewers": srv.peers.count(),
             "default": i == 0}
            for i, (name, srv) in enumerate(channels)
        ]})

    root.router.add_get("/channels.json", listing)
    # /c/NAME -> /c/NAME/, so the page's relative URLs (offer, ws/audio ...) stay in the channel
    root.middlewares.append(web.normalize_path_middleware(
        append_slash=True, redirect_class=web.HTTPMovedPermanently))
    for name, srv in channels:
        root.add_subapp(f"/c/{name}", srv.mirror_app() if srv is first else srv.app)
    return root
