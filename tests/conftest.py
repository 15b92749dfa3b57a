"""Shared fixtures: paths to ../shared/media (skip cleanly when absent) and generated audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_MEDIA = REPO.parent / "shared" / "media"


@pytest.fixture(scope="session")
def shared_media() -> Path:
    """../shared/media, or skip: a fresh clone without the shared folder cannot run these."""
    if not (SHARED_MEDIA / "clips").is_dir():
        pytest.skip(f"needs the shared media folder at {SHARED_MEDIA} (absent in a fresh clone)")
    return SHARED_MEDIA


@pytest.fixture()
def tone() -> np.ndarray:
    """One second of a 440 Hz tone with a little noise, 16 kHz float32."""
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    return (0.3 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.standard_normal(16000)).astype(np.float32)
