"""Stream fixtures: share the pipeline test helpers (tiny avatar, test engine, speech sound)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipeline"))

from pipeline_helpers import models, speech_wav, tiny_bundle  # noqa: E402

__all__ = ["models", "speech_wav", "tiny_bundle"]
