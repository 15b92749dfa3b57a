"""Choosing and opening a TTS engine from `TtsConfig`."""

from __future__ import annotations

import logging

from anchor.config import TtsConfig
from anchor.errors import TtsError
from anchor.tts import espeak, festival
from anchor.tts.base import Synthesizer, check_rate

log = logging.getLogger(__name__)

ENGINES = ("festival", "espeak-ng")  # best first
INSTALL = {"festival": festival.INSTALL, "espeak-ng": espeak.INSTALL}
_ALIASES = {"espeak": "espeak-ng", "espeakng": "espeak-ng", "espeak_ng": "espeak-ng",
            "festival": "festival", "espeak-ng": "espeak-ng", "auto": "auto", "": "auto"}


def engine_installed(name: str) -> bool:
    if name == "festival":
        return festival.festival_binary() is not None
    if name == "espeak-ng":
        return espeak.library_path() is not None
    return False


def available_engines() -> list[str]:
    """Installed engines, best first (cheap: no engine is started)."""
    return [e for e in ENGINES if engine_installed(e)]


def _english(language: str) -> bool:
    return language.lower().replace("_", "-").split("-")[0] in ("en", "")


def open_synthesizer(cfg: TtsConfig) -> Synthesizer:
    """The configured engine, started and checked (voice, rate), or a one-line TtsError that
    names the Debian package to install.

    engine "auto": festival (its HTS voice) for English when it is installed, else espeak-ng;
    festival's voices are English, so any other tts.language goes to espeak-ng.
    """
    name = _ALIASES.get(cfg.engine.strip().lower())
    if name is None:
        raise TtsError(f"unknown TTS engine {cfg.engine!r} (config tts.engine): "
                       "auto, festival or espeak-ng")
    check_rate(cfg.rate, "tts.rate")
    if cfg.max_chars < 1 or cfg.sentence_max_chars < 1:
        raise TtsError("tts.max_chars and tts.sentence_max_chars must be at least 1")
    if name == "festival":
        return festival.FestivalSynthesizer(cfg)
    if name == "espeak-ng":
        return espeak.EspeakSynthesizer(cfg)
    if _english(cfg.language) and engine_installed("festival"):
        try:
            return festival.FestivalSynthesizer(cfg)
        except TtsError as exc:
            if not engine_installed("espeak-ng"):
                raise
            log.warning("festival unusable (%s); using espeak-ng", exc)
            if cfg.voice:  # a festival voice name means nothing to espeak-ng
                from dataclasses import replace

                cfg = replace(cfg, voice="")
    if engine_installed("espeak-ng"):
        return espeak.EspeakSynthesizer(cfg)
    if _english(cfg.language):
        raise TtsError(f"no TTS engine is installed: {festival.INSTALL} (or {espeak.INSTALL})")
    raise TtsError(f"no TTS engine for language {cfg.language!r} is installed: {espeak.INSTALL}")
