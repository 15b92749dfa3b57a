"""The aiohttp application: web client, WebRTC signalling (/offer, WHEP), audio ingest, control,
health and metrics, around one running `AnchorSession`.

Routes:
    GET  /                 web client (web_client/index.html, client.js, style.css)
    POST /offer            JSON {sdp, type, [push, token]} -> JSON answer {sdp, type, id}
    POST /whep             application/sdp offer -> 201, answer SDP, Location: /whep/<id>
    DELETE /whep/<id>      end that WHEP session
    GET  /ws/audio         websocket: JSON header then PCM16 chunks (token required)
    POST /speak            audio file upload (raw body or multipart field) (token required)
    POST /interrupt        stop speaking now (token required)
    GET  /healthz          JSON status (stats, per-stage latency medians, queues, drops)
    GET  /avatar.json      frame size, fps, mouth box, lookahead and latency target
    GET  /metrics          Prometheus text (this app's own registry)

Every handler turns its failures into a one-line 4xx; an exception in one request or peer never
reaches the others.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web

from anchor.config import ServerConfig
from anchor.errors import AudioError, StreamError
from anchor.pipeline.session import AnchorSession, InputBusy
from anchor.stream.auth import bearer_token, token_matches
from anchor.stream.ice import enable_loopback_candidates
from anchor.stream.ingest import handle_ws_audio
from anchor.stream.metrics import AnchorMetrics
from anchor.stream.peers import OfferError, PeerManager, one_line, wants_audio_send

log = logging.getLogger(__name__)

WEB_ROOT = Path(__file__).resolve().parents[2] / "web_client"
WEB_FILES = {
    "index.html": "text/html",
    "client.js": "application/javascript",
    "style.css": "text/css",
}

SESSION_KEY: web.AppKey[AnchorSession] = web.AppKey("session", AnchorSession)
PEERS_KEY: web.AppKey[PeerManager] = web.AppKey("peers", PeerManager)
METRICS_KEY: web.AppKey[AnchorMetrics] = web.AppKey("metrics", AnchorMetrics)


def error(status: int, message: str) -> web.Response:
    """A one-line plain-text error."""
    return web.Response(status=status, text=message.strip().splitlines()[0] + "\n")


@web.middleware
async def whep_cors(request: web.Request, handler: Any) -> web.StreamResponse:
    """WHEP players often live on other origins: allow them to watch (watching needs no
    token; control endpoints get no CORS headers, so other pages cannot drive them)."""
    response: web.StreamResponse = await handler(request)
    if request.path == "/whep" or request.path.startswith("/whep/"):
        response.headers["Access-Control-Allow-Origin"] = "*"
        response.headers["Access-Control-Allow-Methods"] = "POST, DELETE, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type, Authorization"
        response.headers["Access-Control-Expose-Headers"] = "Location, ETag"
    return response


class AnchorServer:
    """Handlers bound to one session; `app` is the aiohttp application."""

    def __init__(
        self,
        session: AnchorSession,
        cfg: ServerConfig,
        token: str,
        *,
        web_root: Path | None = None,
        owns_session: bool = True,
    ) -> None:
        enable_loopback_candidates()
        self.session = session
        self.cfg = cfg
        self.token = token
        self.web_root = web_root or WEB_ROOT
        self.owns_session = owns_session
        self.peers = PeerManager(session, cfg)
        self.ws_counter: dict[str, int] = {"ws": 0}
        self.metrics = AnchorMetrics(session, self.session_counts)
        session.observers.add(self.metrics)
        app = web.Application(client_max_size=cfg.max_upload_bytes, middlewares=[whep_cors])
        app[SESSION_KEY] = session
        app[PEERS_KEY] = self.peers
        app[METRICS_KEY] = self.metrics
        app.router.add_get("/", self.index)
        app.router.add_get("/{name:client\\.js|style\\.css|index\\.html}", self.static)
        app.router.add_post("/offer", self.offer)
        app.router.add_post("/whep", self.whep_post)
        app.router.add_delete("/whep/{id}", self.whep_delete)
        app.router.add_patch("/whep/{id}", self.whep_patch)
        app.router.add_route("OPTIONS", "/whep", self.whep_options)
        app.router.add_route("OPTIONS", "/whep/{id}", self.whep_options)
        app.router.add_get("/ws/audio", self.ws_audio)
        app.router.add_post("/speak", self.speak)
        app.router.add_post("/interrupt", self.interrupt)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/avatar.json", self.avatar_info)
        app.router.add_get("/metrics", self.metrics_handler)
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        self.app = app

    # -- lifecycle -----------------------------------------------------------------------------
    async def _on_startup(self, _app: web.Application) -> None:
        await self.session.start()

    async def _on_shutdown(self, _app: web.Application) -> None:
        await self.peers.close_all()
        if self.owns_session:
            await self.session.aclose()

    def session_counts(self) -> dict[str, int]:
        return {
            "webrtc": self.peers.count("webrtc"),
            "whep": self.peers.count("whep"),
            "ws_push": self.ws_counter["ws"],
        }

    # -- auth ----------------------------------------------------------------------------------
    def authorized(self, request: web.Request, allow_query: bool = False, given: str | None = None) -> bool:
        token = given or bearer_token(request.headers.get("Authorization"))
        if token is None and allow_query:
            token = request.query.get("token")
        return token_matches(self.token, token)

    # -- web client ----------------------------------------------------------------------------
    async def index(self, request: web.Request) -> web.StreamResponse:
        return self._file("index.html")

    async def static(self, request: web.Request) -> web.StreamResponse:
        return self._file(request.match_info["name"])

    def _file(self, name: str) -> web.StreamResponse:
        path = self.web_root / name
        if name not in WEB_FILES or not path.is_file():
            return error(404, f"{name}: not found (web client missing at {self.web_root})")
        return web.FileResponse(path, headers={"Content-Type": WEB_FILES[name], "Cache-Control": "no-cache"})

    # -- signalling ----------------------------------------------------------------------------
    async def offer(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
            return error(400, "offer must be JSON {sdp, type}")
        if not isinstance(body, dict) or not isinstance(body.get("sdp"), str):
            return error(400, "offer must be JSON {sdp, type}")
        push = bool(body.get("push", False))
        if push and not self.authorized(request, given=body.get("token") or None):
            return error(401, "pushing the microphone needs a valid token")
        if push and not wants_audio_send(body["sdp"]):
            return error(400, "push requested but the offer sends no audio track")
        try:
            peer = await self.peers.answer(
                body["sdp"], str(body.get("type", "")), kind="webrtc", push_allowed=push
            )
        except OfferError as exc:
            return error(400, str(exc))
        desc = peer.pc.localDescription
        return web.json_response({"sdp": desc.sdp, "type": desc.type, "id": peer.id})

    async def whep_post(self, request: web.Request) -> web.Response:
        ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "application/sdp":
            return error(415, "WHEP offers must be Content-Type: application/sdp")
        try:
            sdp = await request.text()
        except UnicodeDecodeError:
            return error(400, "offer SDP is not text")
        try:
            peer = await self.peers.answer(sdp, "offer", kind="whep", push_allowed=False)
        except OfferError as exc:
            return error(400, str(exc))
        location = f"/whep/{peer.id}"
        return web.Response(
            status=201, text=peer.pc.localDescription.sdp, content_type="application/sdp",
            headers={"Location": location, "ETag": f'"{peer.id}"'},
        )

    async def whep_options(self, request: web.Request) -> web.Response:
        return web.Response(status=204, headers={"Allow": "POST, DELETE, OPTIONS"})

    async def whep_delete(self, request: web.Request) -> web.Response:
        peer = self.peers.peers.get(request.match_info["id"])
        if peer is None or peer.kind != "whep":
            return error(404, "no such WHEP session")
        await self.peers.close(peer.id)
        return web.Response(status=200)

    async def whep_patch(self, request: web.Request) -> web.Response:
        # Trickle ICE / ICE restarts are not supported: the answer carries every candidate.
        return web.Response(status=405, headers={"Allow": "DELETE"}, text="trickle ICE not supported\n")

    # -- inputs --------------------------------------------------------------------------------
    async def ws_audio(self, request: web.Request) -> web.StreamResponse:
        if not self.authorized(request, allow_query=True):
            return error(401, "pushing audio needs a valid token (Authorization: Bearer T or ?token=T)")
        return await handle_ws_audio(
            request, self.session, self.cfg.max_ws_message_bytes, self.ws_counter
        )

    async def speak(self, request: web.Request) -> web.Response:
        if not self.authorized(request):
            return error(401, "speaking needs a valid token (Authorization: Bearer T)")
        try:
            data, name = await self._read_upload(request)
        except web.HTTPRequestEntityTooLarge:
            return error(413, f"upload larger than {self.cfg.max_upload_bytes} bytes")
        except StreamError as exc:
            return error(400, str(exc))
        if not data:
            return error(400, "empty upload: send an audio file as the body or a multipart field")
        fd, tmp = tempfile.mkstemp(prefix="anchor-speak-", suffix=Path(name).suffix[:10])
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            try:
                queued = await self.session.speak_file(tmp)
            except AudioError as exc:
                return error(415, f"{name}: {str(exc).split(': ', 1)[-1]}")
            except InputBusy as exc:
                return error(409, str(exc))
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return web.json_response({"status": "queued", "queued": queued, "name": name}, status=202)

    async def _read_upload(self, request: web.Request) -> tuple[bytes, str]:
        ctype = request.headers.get("Content-Type", "")
        limit = self.cfg.max_upload_bytes
        if request.content_length is not None and request.content_length > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
        if ctype.startswith("multipart/"):
            try:
                reader = await request.multipart()
                async for part in reader:
                    if not isinstance(part, BodyPartReader):
                        continue
                    if part.filename or part.name in ("file", "audio"):
                        data = bytearray()
                        while chunk := await part.read_chunk():
                            data += chunk
                            if len(data) > limit:
                                raise web.HTTPRequestEntityTooLarge(
                                    max_size=limit, actual_size=len(data)
                                )
                        return bytes(data), part.filename or "upload"
            except (ValueError, AssertionError) as exc:
                raise StreamError(f"bad multipart upload ({one_line(exc)})") from exc
            raise StreamError("multipart upload has no file field")
        return await request.read(), "upload"

    async def interrupt(self, request: web.Request) -> web.Response:
        if not self.authorized(request):
            return error(401, "interrupting needs a valid token (Authorization: Bearer T)")
        dropped = await self.session.interrupt("interrupt (HTTP)")
        return web.json_response({"status": "interrupted", "dropped": dropped})

    # -- health --------------------------------------------------------------------------------
    async def healthz(self, request: web.Request) -> web.Response:
        s = self.session
        body: dict[str, Any] = {"status": "ok" if s.running else "stopped", **s.stats()}
        body["sessions"] = self.session_counts()
        return web.json_response(body, status=200 if s.running else 503)

    async def avatar_info(self, request: web.Request) -> web.Response:
        """What a client needs to lay out or inspect the picture (e.g. the mouth region)."""
        m = self.session.models
        width, height = m.engine.frame_size
        return web.json_response({
            "name": m.name,
            "width": width - width % 2,
            "height": height - height % 2,
            "fps": m.fps,
            "mouth_box": list(m.info.get("mouth_box", (0, 0, width, height))),
            "lookahead_ms": m.lookahead_ms,
            "hop_ms": m.streaming.hop_ms,
            "latency_target_ms": round(1000 * self.session.live_latency_s, 1),
        })

    async def metrics_handler(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self.metrics.render(), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
        )
