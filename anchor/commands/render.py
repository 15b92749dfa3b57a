"""`anchor render (AUDIO | --text "..." | --script FILE.txt) [--avatar BUNDLE] -o out.mp4`.

A talking-anchor MP4 (H.264 + AAC). Runs the serving pipeline's own stages unpaced with a file
source and an MP4 sink; a text is first synthesised whole with the TTS (tts.engine, tts.voice,
tts.rate; --voice/--rate override them), checked by the same rules as POST /say (empty,
longer than tts.max_chars, not UTF-8, markup: one-line error, exit 2).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from anchor.config import AnchorConfig, to_dict
from anchor.errors import TtsError

if TYPE_CHECKING:
    import numpy as np

    from anchor.mouth.visemes import SpeechCues

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("audio", nargs="?", help="speech to lip-sync (any format PyAV decodes)")
    source.add_argument("--text", help="text to speak instead (synthesised with tts.engine)")
    source.add_argument("--script", metavar="FILE.txt", help="a UTF-8 text file to speak")
    parser.add_argument("--voice", help="TTS voice for --text/--script (default: tts.voice)")
    parser.add_argument("--rate", type=float, help="TTS speaking rate (default: tts.rate)")
    parser.add_argument("-o", "--out", required=True, help="output .mp4")
    parser.add_argument("--avatar", help="avatar bundle directory (default: the shipped avatar)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def read_text(text: str | None, script: str | None) -> str | bytes:
    """The --text, or the --script file's bytes (validate_text says when they are not UTF-8)."""
    if script is None:
        return text or ""
    try:
        return Path(script).read_bytes()
    except OSError as exc:
        raise TtsError(f"--script {script}: {exc.strerror or exc}") from None


def synthesise_text(
    text: str | bytes, cfg: AnchorConfig, voice: str | None, rate: float | None,
    *, progress: bool = False,
) -> tuple[np.ndarray, SpeechCues]:
    """The whole text as 16 kHz mono float32 and its phoneme/word timings (TtsError: bad text
    or no engine, one line)."""
    import numpy as np

    from anchor.mouth.visemes import SpeechCues
    from anchor.tts import open_synthesizer, sentence_cues, validate_text

    clean = validate_text(text, cfg.tts.max_chars)  # before opening the engine: fail fast
    synth = open_synthesizer(cfg.tts)
    parts: list[np.ndarray] = []
    cues: list[tuple[float, SpeechCues]] = []
    offset = 0
    bar = None
    if progress:
        from anchor.progress import progress_bar

        bar = progress_bar(unit="sentence", desc="synthesise")
    try:
        for sentence in synth.stream(clean, voice=voice, rate=rate):
            parts.append(np.asarray(sentence.samples, np.float32).reshape(-1))
            cues.append((offset / sentence.sample_rate, sentence_cues(sentence)))
            offset += parts[-1].size
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        close = getattr(synth, "close", None)
        if callable(close):
            close()
    if not parts:
        raise TtsError("the TTS produced no speech for that text")
    return np.concatenate(parts), SpeechCues.concat(cues)


def run(args: argparse.Namespace, cfg: AnchorConfig) -> int:
    from anchor.pipeline.models import load_models
    from anchor.pipeline.offline import render_file_to_mp4, render_samples_to_mp4

    speech = None
    cues = None
    if args.audio is not None and (args.voice or args.rate is not None):
        raise TtsError("--voice and --rate apply to --text/--script, not to an audio file")
    if args.audio is None:
        from anchor.audio.resample import resample

        text = read_text(args.text, args.script)
        speech, cues = synthesise_text(text, cfg, args.voice, args.rate,
                                       progress=not args.no_progress)
        if cfg.audio.sample_rate != 16000:  # TTS sentences are 16 kHz
            speech = resample(speech, 16000, cfg.audio.sample_rate)
    models = load_models(args.avatar, cfg)
    try:
        if speech is not None:
            result = render_samples_to_mp4(speech, args.out, models, progress=not args.no_progress,
                                           cues=cues)
        else:
            result = render_file_to_mp4(args.audio, args.out, models, progress=not args.no_progress)
    finally:
        models.engine.close()
    info = {
        "out": str(result.path),
        "frames": result.frames,
        "speech_frames": result.speech_frames,
        "duration_s": round(result.duration_s, 3),
        "elapsed_s": round(result.elapsed_s, 2),
        "render_fps": round(result.render_fps, 1),
        "lookahead_ms": result.lookahead_ms,
        "avatar": models.name,
    }
    if args.json:
        print(json.dumps({**info, "streaming": to_dict(models.streaming)}))
    else:
        print(
            f"wrote {info['out']}: {result.frames} frames ({result.duration_s:.2f} s, "
            f"{result.speech_frames} speaking) in {result.elapsed_s:.1f} s "
            f"({result.render_fps:.1f} fps), lookahead {result.lookahead_ms:.0f} ms"
        )
    return 0
