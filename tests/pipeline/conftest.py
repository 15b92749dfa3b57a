"""Pipeline fixtures (the helpers live in pipeline_helpers.py so tests/stream can share them)."""

from __future__ import annotations

from pipeline_helpers import models, speech_wav, tiny_bundle

__all__ = ["models", "speech_wav", "tiny_bundle"]
