"""`POST /rundown` requests: a list of items (text or audio) played in order with pauses.

Two forms (the items are the same):
- JSON: {"items": [ITEM, ...], "pause_s"?: 1.0} (or just the list), for text-only rundowns;
- multipart/form-data: a field named `rundown` holding that JSON, plus one file field per audio
  clip; an audio item names its field: {"audio": "intro"} plays the file sent as field "intro".

ITEM is {"text": "...", "voice"?: "...", "rate"?: 1.0, "pause_s"?: 2.0}, a bare string (a text),
or {"audio": "FIELD", "pause_s"?: 2.0}. `pause_s` is the silence after the item (default: the
request's, else 1 s). Everything is checked before anything is queued: texts by the TTS's rules,
audio decoded up front (so a bad clip is a 415 now, not a gap later) and held in memory, at most
server.max_speak_s of it across the whole rundown.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import BodyPartReader, web

from anchor.config import ServerConfig
from anchor.errors import AudioError
from anchor.stream.say import (
    DEFAULT_PAUSE_S,
    MAX_RUNDOWN_ITEMS,
    DeskError,
    SpeechDesk,
    audio_error_text,
    check_keys,
    check_pause,
    check_rate,
    check_voice,
    parse_json,
    read_bounded,
)

FORM_FIELD = "rundown"  # the multipart field carrying the JSON
TITLE_CHARS = 60


@dataclasses.dataclass
class ItemSpec:
    """One checked item, ready for `SpeechDesk.add_rundown`."""

    kind: str  # "text" | "audio"
    title: str
    pause_s: float
    text: str | None = None
    voice: str | None = None
    rate: float | None = None
    samples: np.ndarray | None = None  # an audio item, decoded at the session's rate


def title_of(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= TITLE_CHARS else flat[: TITLE_CHARS - 1] + "…"


async def read_rundown(
    request: web.Request, desk: SpeechDesk, cfg: ServerConfig
) -> list[ItemSpec]:
    """The checked items of a POST /rundown (DeskError with the status to answer)."""
    if request.content_type.startswith("multipart/"):
        with tempfile.TemporaryDirectory(prefix="anchor-rundown-") as tmp:
            raw, files = await _read_form(request, cfg, Path(tmp))
            if raw is None:
                raise DeskError(400, f"multipart rundown needs a field named {FORM_FIELD!r} "
                                     "with the JSON list of items")
            return await build_items(parse_json(raw, "rundown"), files, desk, cfg)
    raw = await read_bounded(request, cfg.max_signalling_bytes, "rundown")
    return await build_items(parse_json(raw, "rundown"), {}, desk, cfg)


async def _read_form(
    request: web.Request, cfg: ServerConfig, folder: Path
) -> tuple[bytes | None, dict[str, tuple[Path, str]]]:
    """(the JSON field, {field name: (temporary file, client's file name)}), written to disk as
    it arrives; at most server.max_upload_bytes of files in all (413)."""
    limit = cfg.max_upload_bytes
    if request.content_length is not None and request.content_length > limit:
        raise DeskError(413, f"upload larger than {limit} bytes (server.max_upload_bytes)")
    raw: bytes | None = None
    files: dict[str, tuple[Path, str]] = {}
    total = 0
    try:
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader):
                raise DeskError(400, "nested multipart is not supported")
            name = part.name or ""
            if name == FORM_FIELD and not part.filename:
                data = bytearray()
                while chunk := await part.read_chunk():
                    data += chunk
                    if len(data) > cfg.max_signalling_bytes:
                        raise DeskError(413, f"field {FORM_FIELD!r} larger than "
                                             f"{cfg.max_signalling_bytes} bytes "
                                             "(server.max_signalling_bytes)")
                raw = bytes(data)
                continue
            if not name:
                raise DeskError(400, "every multipart field needs a name (audio items refer "
                                     "to it)")
            if name in files:
                raise DeskError(400, f"field {name!r} sent twice")
            path = folder / str(len(files))
            with path.open("wb") as f:
                while chunk := await part.read_chunk():
                    total += len(chunk)
                    if total > limit:
                        raise DeskError(413, f"upload larger than {limit} bytes "
                                             "(server.max_upload_bytes)")
                    f.write(chunk)
            files[name] = (path, client_name(part.filename) if part.filename else name)
    except (ValueError, AssertionError) as exc:  # a malformed body (aiohttp's parser)
        raise DeskError(400, f"bad multipart rundown ({' '.join(str(exc).split())[:120]})") \
            from None
    return raw, files


def client_name(filename: str | None) -> str:
    """The client's file name, safe to echo in a one-line reply."""
    name = "".join(ch for ch in Path(filename or "").name if ch.isprintable())[:80]
    return name or "upload"


async def build_items(
    body: Any, files: dict[str, tuple[Path, str]], desk: SpeechDesk, cfg: ServerConfig
) -> list[ItemSpec]:
    if isinstance(body, dict):
        check_keys(body, {"items", "pause_s"}, "rundown: ")
        items = body.get("items")
        default = check_pause(body.get("pause_s", DEFAULT_PAUSE_S), "rundown: ")
    else:
        items, default = body, DEFAULT_PAUSE_S
    if not isinstance(items, list) or not items:
        raise DeskError(400, 'rundown must be JSON {"items": [{"text": "..."} or {"audio": '
                             '"FIELD"}, ...], "pause_s"?: 1.0}')
    if len(items) > MAX_RUNDOWN_ITEMS:
        raise DeskError(413, f"rundown has {len(items)} items (at most {MAX_RUNDOWN_ITEMS})")
    specs: list[ItemSpec] = []
    audio: list[tuple[int, str, str]] = []  # (index in specs, field, where)
    for i, raw in enumerate(items, 1):
        where = f"item {i}: "
        item = {"text": raw} if isinstance(raw, str) else raw
        if not isinstance(item, dict) or ("text" in item) == ("audio" in item):
            raise DeskError(400, f"{where}must be {{\"text\": \"...\"}} or {{\"audio\": "
                                 "\"FIELD\"}")
        pause = check_pause(item.get("pause_s", default), where)
        if "text" in item:
            check_keys(item, {"text", "voice", "rate", "pause_s"}, where)
            if not isinstance(item["text"], str):
                raise DeskError(400, f"{where}'text' must be a string")
            text = desk.validate_text(item["text"], where)
            specs.append(ItemSpec(
                "text", title_of(text), pause, text=text,
                voice=check_voice(item.get("voice"), where), rate=check_rate(item.get("rate"), where),
            ))
        else:
            check_keys(item, {"audio", "pause_s"}, where)
            field = item["audio"]
            if not isinstance(field, str) or field not in files:
                sent = ", ".join(repr(f) for f in files) or "none"
                raise DeskError(400, f"{where}'audio' is {json.dumps(field)[:40]}: it must name a "
                                     f"file field of this multipart request (fields sent: {sent})")
            specs.append(ItemSpec("audio", files[field][1], pause))
            audio.append((len(specs) - 1, field, where))
    unused = sorted(set(files) - {field for _, field, _ in audio})
    if unused:
        raise DeskError(400, f"file field {unused[0]!r} is not used by any item")
    if any(s.kind == "text" for s in specs):
        synth = await desk.synthesizer()  # no engine: a 503 now, not silence later
        for i, spec in enumerate(specs, 1):
            if spec.kind == "text":
                desk.check_voice_rate(synth, spec.voice, spec.rate, f"item {i}: ")
    await _decode_all(specs, audio, files, desk, cfg)
    return specs


async def _decode_all(
    specs: list[ItemSpec], audio: list[tuple[int, str, str]],
    files: dict[str, tuple[Path, str]], desk: SpeechDesk, cfg: ServerConfig,
) -> None:
    from anchor.audio.decode import AudioTooLong

    limited = cfg.max_speak_s > 0
    budget = cfg.max_speak_s - desk.held_audio_s()
    decoded: dict[str, np.ndarray] = {}  # a clip used twice is decoded (and held) once
    rate = desk.session.sample_rate
    for index, field, where in audio:
        path, name = files[field]
        if field not in decoded:
            if limited and budget <= 0:
                raise DeskError(413, f"{where}{name}: the rundown already holds "
                                     f"server.max_speak_s = {cfg.max_speak_s:g} s of audio")
            try:
                x = await desk.decode_audio(path, budget if limited else None)
            except AudioTooLong:
                raise DeskError(413, f"{where}{name}: longer than the {budget:.0f} s of audio the "
                                     f"rundown may still hold (server.max_speak_s = "
                                     f"{cfg.max_speak_s:g} s in all)") from None
            except AudioError as exc:
                raise DeskError(415, f"{where}{name}: {audio_error_text(exc, path)}") from None
            if x.size == 0:
                raise DeskError(415, f"{where}{name}: no audio samples")
            decoded[field] = x
            budget -= x.size / rate
        specs[index].samples = decoded[field]
