"""Run the app in-process on a free 127.0.0.1 port for a test."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator

from aiohttp.test_utils import TestClient, TestServer

from anchor.config import ServerConfig
from anchor.pipeline.engine import PipelineModels
from anchor.pipeline.session import AnchorSession
from anchor.stream.app import AnchorServer

TOKEN = "test-token"


@contextlib.asynccontextmanager
async def running_app(
    models: PipelineModels, **overrides: object
) -> AsyncIterator[tuple[TestClient, AnchorServer]]:
    cfg = dataclasses.replace(ServerConfig(latency_margin_ms=80), **overrides)  # type: ignore[arg-type]
    session = AnchorSession(models, cfg)
    server = AnchorServer(session, cfg, TOKEN)
    async with TestClient(TestServer(server.app, host="127.0.0.1")) as client:
        yield client, server


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}
