"""/ws/audio idle timeout: a pusher that holds its socket open but sends nothing is closed with a
clear reason (1008, naming server.ws_idle_timeout_s) and the only input slot is freed."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import numpy as np
import pytest
from stream_helpers import auth, running_app

from anchor.pipeline.models import PipelineModels


async def wait_closed(ws: aiohttp.ClientWebSocketResponse, within: float) -> aiohttp.WSMessage:
    async with asyncio.timeout(within):
        while True:
            msg = await ws.receive()
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                return msg


async def push_ready(client: object) -> aiohttp.ClientWebSocketResponse:
    ws: aiohttp.ClientWebSocketResponse = await client.ws_connect(  # type: ignore[attr-defined]
        "/ws/audio", headers=auth()
    )
    await ws.send_str('{"sample_rate": 16000}')
    assert (await ws.receive_json(timeout=5))["type"] == "ready"
    return ws


@pytest.mark.parametrize("send_header", [True, False])
def test_a_silent_pusher_is_closed_and_frees_the_input(
    models: PipelineModels, send_header: bool
) -> None:
    async def main() -> None:
        async with running_app(models, ws_idle_timeout_s=0.5) as (client, server):
            t0 = time.perf_counter()
            if send_header:
                ws = await push_ready(client)
                assert server.session.active_input is not None
            else:
                ws = await client.ws_connect("/ws/audio", headers=auth())
            msg = await wait_closed(ws, within=3)
            elapsed = time.perf_counter() - t0
            what = "audio" if send_header else "header"
            assert ws.close_code == 1008
            assert msg.extra == f"no {what} for 0.5 s: closing (server.ws_idle_timeout_s)"
            assert 0.4 < elapsed < 2.5, elapsed
            assert server.session.active_input is None
            second = await push_ready(client)  # the slot is free again
            await second.close()

    asyncio.run(main())


def test_pings_do_not_keep_an_idle_pusher_alive(models: PipelineModels) -> None:
    async def main() -> None:
        async with running_app(models, ws_idle_timeout_s=0.6) as (client, _server):
            ws = await push_ready(client)

            async def keep_pinging() -> None:
                while not ws.closed:
                    await ws.ping()
                    await asyncio.sleep(0.1)

            pinger = asyncio.create_task(keep_pinging())
            try:
                await wait_closed(ws, within=3)
            finally:
                pinger.cancel()
                await asyncio.gather(pinger, return_exceptions=True)
            assert ws.close_code == 1008

    asyncio.run(main())


def test_a_pusher_that_keeps_sending_stays_open(models: PipelineModels) -> None:
    async def main() -> None:
        async with running_app(models, ws_idle_timeout_s=0.5) as (client, server):
            ws = await push_ready(client)
            chunk = np.zeros(1600, "<i2").tobytes()  # 100 ms of silence: a pause, not nothing
            for _ in range(15):  # 1.5 s, three idle timeouts' worth
                await ws.send_bytes(chunk)
                await asyncio.sleep(0.1)
            assert not ws.closed and server.session.active_input is not None
            await ws.close()

    asyncio.run(main())


def test_zero_disables_the_idle_timeout(models: PipelineModels) -> None:
    async def main() -> None:
        async with running_app(models, ws_idle_timeout_s=0.0) as (client, server):
            ws = await push_ready(client)
            with pytest.raises(TimeoutError):
                await wait_closed(ws, within=1.0)
            assert not ws.closed and server.session.active_input is not None
            await ws.close()

    asyncio.run(main())
