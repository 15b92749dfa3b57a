"""Chroma key, spill suppression and the studio background.

Keying is colour-difference based: a pixel's "key excess" is its key channel minus the larger of
the other two (in [0, 1]); excess >= threshold is background, excess <= threshold * (1 - softness)
is foreground, linear in between. Spill suppression limits the key channel to the mean of the
other two (the classic "average" despill), which removes a green (or blue) cast from hair and
skin; natural skin and hair have less green than that and are left alone.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from anchor.errors import ComposeError

KEYS = ("none", "green", "blue")
_HEX = re.compile(r"^#?([0-9a-fA-F]{6})$")
DEFAULT_STUDIO_COLOUR = (28, 40, 58)  # dark studio blue, used when keying without a background


def _channels(key: str) -> tuple[int, int, int]:
    """(key channel, other, other) indices in RGB."""
    if key == "green":
        return 1, 0, 2
    if key == "blue":
        return 2, 0, 1
    raise ComposeError(f"unknown chroma key {key!r} (known: {', '.join(KEYS)})")


def key_alpha(
    rgb: np.ndarray, key: str = "green", threshold: float = 0.35, softness: float = 0.5
) -> np.ndarray:
    """Foreground alpha (H, W) float32 in [0, 1] of an RGB uint8 image keyed on `key`."""
    if not 0 < threshold <= 1:
        raise ComposeError(f"chroma key threshold must be in (0, 1], got {threshold}")
    k, a, b = _channels(key)
    x = rgb.astype(np.float32) * (1.0 / 255.0)
    excess = x[..., k] - np.maximum(x[..., a], x[..., b])
    width = max(threshold * softness, 1e-3)
    alpha = np.clip((threshold - excess) / width, 0.0, 1.0)
    return np.asarray(alpha, dtype=np.float32)


def suppress_spill(rgb: np.ndarray, key: str = "green") -> np.ndarray:
    """RGB uint8 with the key channel limited to the mean of the other two: no green cast left."""
    k, a, b = _channels(key)
    out = rgb.copy()
    limit = ((rgb[..., a].astype(np.uint16) + rgb[..., b]) >> 1).astype(np.uint8)
    np.minimum(rgb[..., k], limit, out=out[..., k])
    return out


def parse_background(spec: str, width: int, height: int) -> np.ndarray | None:
    """`#rrggbb` -> a flat colour frame, an image path -> that image scaled to cover (H, W),
    empty -> None (keep the template's own background)."""
    spec = spec.strip()
    if not spec:
        return None
    m = _HEX.match(spec)
    if m:
        v = int(m.group(1), 16)
        colour = np.array([(v >> 16) & 255, (v >> 8) & 255, v & 255], dtype=np.uint8)
        return np.broadcast_to(colour, (height, width, 3)).copy()
    path = Path(spec)
    if not path.is_file():
        raise ComposeError(f"compose.background {spec!r}: neither #rrggbb nor an existing image file")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ComposeError(f"{path}: cannot read as an image (compose.background)")
    img = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return cover(img, width, height)


def cover(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale an image to cover (width, height) and centre-crop it."""
    h, w = img.shape[:2]
    s = max(width / w, height / h)
    nw, nh = max(width, round(w * s)), max(height, round(h * s))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    img = cv2.resize(img, (nw, nh), interpolation=interp)
    x0, y0 = (nw - width) // 2, (nh - height) // 2
    return np.ascontiguousarray(img[y0 : y0 + height, x0 : x0 + width])


def replace_background(
    rgb: np.ndarray,
    background: np.ndarray,
    key: str,
    threshold: float = 0.35,
    softness: float = 0.5,
) -> np.ndarray:
    """Key `rgb`, suppress spill and put it over `background` (same size)."""
    if background.shape != rgb.shape:
        raise ComposeError(f"background {background.shape} does not match frame {rgb.shape}")
    alpha = key_alpha(rgb, key, threshold, softness)
    # soften the matte edge by a pixel so it does not stair-step
    alpha = cv2.GaussianBlur(alpha, (3, 3), 0)[..., None]
    fg = suppress_spill(rgb, key).astype(np.float32)
    out = background.astype(np.float32) + alpha * (fg - background.astype(np.float32))
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
