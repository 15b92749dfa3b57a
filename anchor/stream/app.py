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
    POST /say              JSON {text, voice?, rate?}: text to speech, queued like /speak (token)
    GET  /rundown          what is on air and what is next (token required)
    POST /rundown          append items (text or audio) played in order with pauses (token)
    DELETE /rundown        empty the items to come (token required)
    GET  /healthz          JSON status (stats, per-stage latency medians, queues, drops)
    GET  /avatar.json      frame size, fps, mouth box, lookahead and latency target
    GET  /metrics          Prometheus text (this app's own registry)

Every handler turns its failures into a one-line 4xx; an exception in one request or peer never
reaches the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import BodyPartReader, web

from anchor.config import BroadcastConfig, ServerConfig
from anchor.errors import AudioError, StreamError
from anchor.pipeline.session import AnchorSession, InputBusy
from anchor.stream.auth import bearer_token, token_matches
from anchor.stream.encoder import SharedEncoder
from anchor.stream.ice import enable_loopback_candidates
from anchor.stream.ingest import handle_ws_audio
from anchor.stream.metrics import AnchorMetrics, BroadcastStats
from anchor.stream.peers import OfferError, PeerManager, ViewerLimit, one_line, wants_audio_send
from anchor.stream.record import BroadcastRecorder, RecordError
from anchor.stream.rundown import read_rundown
from anchor.stream.say import DeskError, SpeechDesk, parse_say, read_bounded

if TYPE_CHECKING:
    from anchor.config import TtsConfig
    from anchor.tts import Synthesizer

log = logging.getLogger(__name__)

# Each shutdown step is bounded, so Ctrl-C (or a test's teardown) never waits forever on one
# stuck part; the recording's finalise gets the longest, being the one with data to lose.
SHUTDOWN_STEP_S = 10.0

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


class SignallingTooLarge(StreamError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            f"offer larger than {limit} bytes (server.max_signalling_bytes): real offers are a few KiB"
        )


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
        broadcast: BroadcastConfig | None = None,
        record: Path | None = None,
        tts: TtsConfig | None = None,
        synthesizer: Synthesizer | None = None,
    ) -> None:
        enable_loopback_candidates()
        self.session = session
        self.cfg = cfg
        self.token = token
        self.web_root = web_root or WEB_ROOT
        self.owns_session = owns_session
        self.broadcast = broadcast or BroadcastConfig()
        self.encoder = SharedEncoder(
            session.broadcaster, session.fps, session.sample_rate, session.clock, self.broadcast,
            float(cfg.viewer_audio_ms),
        )
        self.peers = PeerManager(session, cfg, self.broadcast, self.encoder)
        self.recorder: BroadcastRecorder | None = None
        self._record_at_start = record
        self.ws_counter: dict[str, int] = {"ws": 0}
        self.metrics = AnchorMetrics(session, self.session_counts, self.broadcast_stats)
        session.observers.add(self.metrics)
        # /say and /rundown: text to speech on its own thread, the order things go on air.
        self.desk = SpeechDesk(session, cfg, tts, synthesizer)
        app = web.Application(client_max_size=cfg.max_upload_bytes, middlewares=[whep_cors])
        app[SESSION_KEY] = session
        app[PEERS_KEY] = self.peers
        app[METRICS_KEY] = self.metrics
        app.add_routes(self.routes())
        app.on_startup.append(self._on_startup)
        app.on_startup.append(self._start_desk)
        app.on_shutdown.append(self._on_shutdown)
        app.on_shutdown.insert(0, self._stop_desk)  # before the session it feeds
        self.app = app

    def routes(self) -> list[web.RouteDef]:
        """Every endpoint, relative to wherever the app is mounted (/ or /c/NAME/)."""
        return [
            web.get("/", self.index),
            web.get("/{name:client\\.js|style\\.css|index\\.html}", self.static),
            web.post("/offer", self.offer),
            web.post("/whep", self.whep_post),
            web.delete("/whep/{id}", self.whep_delete),
            web.patch("/whep/{id}", self.whep_patch),
            web.route("OPTIONS", "/whep", self.whep_options),
            web.route("OPTIONS", "/whep/{id}", self.whep_options),
            web.get("/ws/audio", self.ws_audio),
            web.post("/speak", self.speak),
            web.post("/interrupt", self.interrupt),
            web.post("/say", self.say),
            web.get("/rundown", self.rundown_status),
            web.post("/rundown", self.rundown_add),
            web.delete("/rundown", self.rundown_clear),
            web.get("/record", self.record_status),
            web.post("/record", self.record_start),
            web.delete("/record", self.record_stop),
            web.get("/healthz", self.healthz),
            web.get("/avatar.json", self.avatar_info),
            web.get("/metrics", self.metrics_handler),
        ]

    def mirror_app(self) -> web.Application:
        """The same endpoints on a second app without lifecycle hooks (the first channel is
        served at / and again at /c/NAME/; it starts and stops once, with `app`)."""
        app = web.Application(client_max_size=self.cfg.max_upload_bytes, middlewares=[whep_cors])
        app.add_routes(self.routes())
        return app

    # -- lifecycle -----------------------------------------------------------------------------
    async def _on_startup(self, _app: web.Application) -> None:
        await self.session.start()
        self.encoder.start()
        self.peers.start()
        if self._record_at_start is not None:
            self.start_recording(self._record_at_start)

    async def _on_shutdown(self, _app: web.Application) -> None:
        if self.recorder is not None:  # finalised first: Ctrl-C leaves a complete file
            await bounded_step("the recording", self.recorder.aclose(), 3 * SHUTDOWN_STEP_S)
            self.recorder = None
        await bounded_step("the viewers", self.peers.close_all())
        await bounded_step("the encoder", self.encoder.aclose())
        if self.owns_session:
            await bounded_step("the session", self.session.aclose())

    async def _start_desk(self, _app: web.Application) -> None:
        self.desk.start()

    async def _stop_desk(self, _app: web.Application) -> None:
        await bounded_step("the speech desk", self.desk.aclose())

    def broadcast_stats(self) -> BroadcastStats:
        e, p = self.encoder, self.peers
        return BroadcastStats(
            viewers=p.count(), max_viewers=self.broadcast.max_viewers, encode_ms=e.encode_ms,
            frames_encoded=e.frames_encoded, video_skipped=e.video_skipped,
            keyframes_forced=e.keyframes_forced, bytes_sent=e.bytes_out(),
            viewer_video_dropped=e.dropped_video(), evictions=p.evictions,
            rejected_full=p.rejected_full,
        )

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
    async def _read_signalling(self, request: web.Request) -> bytes:
        """The body of an offer, at most `max_signalling_bytes` (SignallingTooLarge beyond).

        Offers get their own small limit: the upload limit (for /speak) would let one request
        hold megabytes of SDP that then has to be parsed on the event loop."""
        limit = self.cfg.max_signalling_bytes
        if request.content_length is not None and request.content_length > limit:
            raise SignallingTooLarge(limit)
        data = bytearray()
        async for chunk in request.content.iter_chunked(16 << 10):
            data += chunk
            if len(data) > limit:  # chunked transfer: no length up front
                raise SignallingTooLarge(limit)
        return bytes(data)

    async def offer(self, request: web.Request) -> web.Response:
        try:
            raw = await self._read_signalling(request)
        except SignallingTooLarge as exc:
            return error(413, str(exc))
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
            return error(400, "offer must be JSON {sdp, type}")
        if not isinstance(body, dict) or not isinstance(body.get("sdp"), str):
            return error(400, "offer must be JSON {sdp, type}")
        if not isinstance(body.get("type", ""), str):
            return error(400, "offer field 'type' must be the string \"offer\"")
        push = body.get("push", False)
        if not isinstance(push, bool):
            return error(400, "offer field 'push' must be true or false")
        token = body.get("token")
        if token is not None and not isinstance(token, str):
            return error(400, "offer field 'token' must be a string")
        if push and not self.authorized(request, given=token or None):
            return error(401, "pushing the microphone needs a valid token")
        if push and not wants_audio_send(body["sdp"]):
            return error(400, "push requested but the offer sends no audio track")
        try:
            peer = await self.peers.answer(
                body["sdp"], str(body.get("type", "")), kind="webrtc", push_allowed=push
            )
        except ViewerLimit as exc:
            return self._full(exc)
        except OfferError as exc:
            return error(400, str(exc))
        desc = peer.pc.localDescription
        return web.json_response({"sdp": desc.sdp, "type": desc.type, "id": peer.id})

    async def whep_post(self, request: web.Request) -> web.Response:
        ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "application/sdp":
            return error(415, "WHEP offers must be Content-Type: application/sdp")
        try:
            sdp = (await self._read_signalling(request)).decode("utf-8")
        except SignallingTooLarge as exc:
            return error(413, str(exc))
        except UnicodeDecodeError:
            return error(400, "offer SDP is not UTF-8 text")
        try:
            peer = await self.peers.answer(sdp, "offer", kind="whep", push_allowed=False)
        except ViewerLimit as exc:
            return self._full(exc)
        except OfferError as exc:
            return error(400, str(exc))
        location = f"{request.path.rstrip('/')}/{peer.id}"  # /whep/ID or /c/NAME/whep/ID
        return web.Response(
            status=201, text=peer.pc.localDescription.sdp, content_type="application/sdp",
            headers={"Location": location, "ETag": f'"{peer.id}"'},
        )

    def _full(self, exc: ViewerLimit) -> web.Response:
        response = error(503, str(exc))
        response.headers["Retry-After"] = "10"
        return response

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
        """Queue an uploaded audio file (raw body or multipart field) to be spoken: 202.

        One plain line otherwise: 400 empty/bad multipart, 401 no token, 409 a live input owns
        the anchor or the file queue is full, 413 upload over server.max_upload_bytes or audio
        longer than server.max_speak_s, 415 not decodable audio, 503 the decoder stayed busy
        for server.speak_decode_wait_s (Retry-After: 1) or the session is stopping."""
        # Local imports: these two errors matter to this handler only.
        from anchor.audio.decode import AudioTooLong
        from anchor.pipeline.session import DecoderBusy

        if not self.authorized(request):
            return error(401, "speaking needs a valid token (Authorization: Bearer T)")
        try:
            tmp, size, name = await self._read_upload(request)
        except web.HTTPRequestEntityTooLarge:
            return error(
                413, f"upload larger than {self.cfg.max_upload_bytes} bytes (server.max_upload_bytes)"
            )
        except StreamError as exc:
            return error(400, str(exc))
        try:
            if size == 0:
                return error(400, "empty upload: send an audio file as the body or a multipart field")
            try:
                queued = await self.session.speak_file(tmp)
            except AudioTooLong as exc:
                return error(413, f"{name}: {self._without_path(exc, tmp)} (server.max_speak_s)")
            except AudioError as exc:
                return error(415, f"{name}: {self._without_path(exc, tmp)}")
            except DecoderBusy as exc:
                busy = error(503, str(exc))
                busy.headers["Retry-After"] = "1"
                return busy
            except InputBusy as exc:
                return error(409, str(exc))
            except StreamError as exc:  # the session is stopping
                return error(503, str(exc))
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return web.json_response({"status": "queued", "queued": queued, "name": name}, status=202)

    async def _read_upload(self, request: web.Request) -> tuple[Path, int, str]:
        """Stream the upload into a temporary file: (path, bytes, client's file name).

        Written as it arrives, so a request never holds its upload in memory. The caller
        deletes the file; it is deleted here when reading fails."""
        ctype = request.headers.get("Content-Type", "")
        limit = self.cfg.max_upload_bytes
        if request.content_length is not None and request.content_length > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
        fd, tmp_name = tempfile.mkstemp(prefix="anchor-speak-")
        tmp = Path(tmp_name)
        size = 0
        try:
            with os.fdopen(fd, "wb") as f:

                def write(chunk: bytes) -> None:
                    nonlocal size
                    size += len(chunk)
                    if size > limit:  # chunked transfer: no length up front
                        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)
                    f.write(chunk)

                if not ctype.startswith("multipart/"):
                    async for chunk in request.content.iter_chunked(64 << 10):
                        write(chunk)
                    return tmp, size, "upload"
                try:
                    reader = await request.multipart()
                    async for part in reader:
                        if not isinstance(part, BodyPartReader):
                            continue
                        if part.filename or part.name in ("file", "audio"):
                            while chunk := await part.read_chunk():
                                write(chunk)
                            name = self._client_name(part.filename)
                            suffix = Path(name).suffix[:10]
                            if suffix[1:].isalnum():  # the extension helps ffmpeg's probe
                                tmp = tmp.rename(tmp.with_name(tmp.name + suffix))
                            return tmp, size, name
                except (ValueError, AssertionError) as exc:
                    log.info("bad multipart upload: %s", one_line(exc))
                    raise StreamError(
                        "bad multipart upload: send the audio as a form field named 'file' "
                        "or as the raw request body"
                    ) from exc
                raise StreamError("multipart upload has no file field (name it 'file')")
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise

    @staticmethod
    def _without_path(exc: BaseException, path: Path) -> str:
        """An AudioError's message without the server-side temporary path it starts with."""
        text = " ".join(str(exc).split())
        prefix = f"{path}: "
        return text[len(prefix):] if text.startswith(prefix) else text

    @staticmethod
    def _client_name(filename: str | None) -> str:
        """The client's file name, safe to echo in a one-line reply."""
        name = "".join(ch for ch in Path(filename or "").name if ch.isprintable())[:80]
        return name or "upload"

    # -- recording -----------------------------------------------------------------------------
    def start_recording(self, path: Path) -> BroadcastRecorder:
        if self.recorder is not None:
            raise RecordError(f"already recording to {self.recorder.path.name}")
        recorder = BroadcastRecorder(self.encoder, path, self.session.fps)
        recorder.start()
        self.recorder = recorder
        return recorder

    async def record_status(self, request: web.Request) -> web.Response:
        if not self.authorized(request):
            return error(401, "recording needs a valid token (Authorization: Bearer T)")
        if self.recorder is None:
            return web.json_response({"recording": False})
        return web.json_response(self.recorder.status())

    async def record_start(self, request: web.Request) -> web.Response:
        """JSON {"name": "show.mp4"} (optional): records into broadcast.record_dir. Only a file
        name is accepted, so a client can never choose where on disk the server writes."""
        if not self.authorized(request):
            return error(401, "recording needs a valid token (Authorization: Bearer T)")
        try:
            raw = await self._read_signalling(request)
            body = json.loads(raw) if raw.strip() else {}
        except SignallingTooLarge as exc:
            return error(413, str(exc))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return error(400, 'record request must be JSON {"name": "FILE.mp4"} or empty')
        name = body.get("name") if isinstance(body, dict) else None
        if name is None:
            name = time.strftime("anchor-%Y%m%d-%H%M%S.mp4")
        if not isinstance(name, str) or Path(name).name != name or name.startswith("."):
            return error(400, "record name must be a plain file name such as show.mp4")
        folder = Path(self.broadcast.record_dir)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            recorder = self.start_recording(folder / name)
        except RecordError as exc:
            return error(409 if "already" in str(exc) else 400, str(exc))
        except OSError as exc:
            return error(500, f"cannot create {folder}: {exc.strerror or exc}")
        return web.json_response(recorder.status(), status=201)

    async def record_stop(self, request: web.Request) -> web.Response:
        if not self.authorized(request):
            return error(401, "recording needs a valid token (Authorization: Bearer T)")
        if self.recorder is None:
            return error(404, "not recording")
        recorder, self.recorder = self.recorder, None
        return web.json_response(await recorder.aclose())

    async def interrupt(self, request: web.Request) -> web.Response:
        if not self.authorized(request):
            return error(401, "interrupting needs a valid token (Authorization: Bearer T)")
        dropped = await self.session.interrupt("interrupt (HTTP)")
        return web.json_response({"status": "interrupted", "dropped": dropped})

    # -- text: /say and /rundown ---------------------------------------------------------------
    async def say(self, request: web.Request) -> web.Response:
        """JSON {"text", "voice"?, "rate"?} (or the text itself as text/plain): spoken sentence
        by sentence, queued like /speak, stopped by /interrupt. 202 {status, id, ahead,
        sentences_ready} once the first sentence is synthesised.

        One plain line otherwise: 400 empty, over-long (tts.max_chars), not UTF-8, markup, bad
        voice/rate, or the engine refused the text; 401 no token; 409 a live input owns the
        anchor or too much is waiting; 413 body over server.max_signalling_bytes; 503 no TTS
        engine installed (the message names the Debian package)."""
        if not self.authorized(request):
            return error(401, "saying needs a valid token (Authorization: Bearer T)")
        try:
            raw = await read_bounded(request, self.cfg.max_signalling_bytes, "/say body")
            text, voice, rate = parse_say(raw, request.content_type)
            result = await self.desk.say(text, voice, rate)
        except DeskError as exc:
            return error(exc.status, str(exc))
        return web.json_response(result, status=202)

    async def rundown_status(self, request: web.Request) -> web.Response:
        """{state, on_air: ITEM|null, next: [ITEM...], done, skipped, say: {on_air, waiting}}."""
        if not self.authorized(request):
            return error(401, "the rundown needs a valid token (Authorization: Bearer T)")
        return web.json_response(self.desk.status())

    async def rundown_add(self, request: web.Request) -> web.Response:
        """Append items: JSON {"items": [...], "pause_s"?} or multipart (a "rundown" JSON field
        plus audio file fields; see anchor/stream/rundown.py). 202 {status, ids, rundown}.

        400 bad JSON/items/text, 401, 413 too big/too many/too much audio, 415 undecodable
        audio, 503 no TTS engine for a text item."""
        if not self.authorized(request):
            return error(401, "the rundown needs a valid token (Authorization: Bearer T)")
        try:
            specs = await read_rundown(request, self.desk, self.cfg)
            ids = self.desk.add_rundown(specs)
        except DeskError as exc:
            return error(exc.status, str(exc))
        return web.json_response(
            {"status": "queued", "ids": ids, "rundown": self.desk.status()}, status=202
        )

    async def rundown_clear(self, request: web.Request) -> web.Response:
        """Empty the items to come; the item on air finishes (POST /interrupt cuts it)."""
        if not self.authorized(request):
            return error(401, "the rundown needs a valid token (Authorization: Bearer T)")
        cleared = self.desk.clear_rundown()
        return web.json_response(
            {"status": "cleared", "cleared": cleared, "rundown": self.desk.status()}
        )

    # -- health --------------------------------------------------------------------------------
    async def healthz(self, request: web.Request) -> web.Response:
        s = self.session
        body: dict[str, Any] = {"status": "ok" if s.running else "stopped", **s.stats()}
        body["sessions"] = self.session_counts()
        body["broadcast"] = self.broadcast_stats().as_dict()
        body["viewers"] = self.peers.count()
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


async def bounded_step(what: str, step: Coroutine[Any, Any, object], limit_s: float = SHUTDOWN_STEP_S) -> None:
    """Run one shutdown step; past `limit_s` it is abandoned with a warning naming it."""
    try:
        async with asyncio.timeout(limit_s):
            await step
    except TimeoutError:
        log.warning("shutdown: %s did not stop within %.1f s; abandoned", what, limit_s)
