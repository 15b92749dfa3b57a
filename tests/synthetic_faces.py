"""Synthetic dlib-68 landmarks shared by the face, jaw and renderer-training tests."""

from __future__ import annotations

import numpy as np


def synthetic_landmarks(open_px: float, *, width_px: float = 0.0, cx: float = 60.0,
                        cy: float = 55.0, a: float = 30.0, tilt: float = 0.0) -> np.ndarray:
    """(68, 2) landmarks of a face of half-width `a` centred at (cx, cy).

    The mouth opens by `open_px` and widens by `width_px`; the chin drops with the opening
    (the relation the jaw regression should learn); `tilt` rotates the face in-plane (radians).
    """
    lm = np.zeros((68, 2))
    phi = np.linspace(0, np.pi, 17)
    lm[0:17] = np.stack([cx - a * np.cos(phi), cy - 0.1 * a + 1.1 * a * np.sin(phi)
                         + 0.8 * open_px * np.sin(phi) ** 2], 1)
    lm[17:22] = np.stack([np.linspace(cx - 0.8 * a, cx - 0.2 * a, 5), np.full(5, cy - 0.6 * a)], 1)
    lm[22:27] = np.stack([np.linspace(cx + 0.2 * a, cx + 0.8 * a, 5), np.full(5, cy - 0.6 * a)], 1)
    lm[27:31] = np.stack([np.full(4, cx), np.linspace(cy - 0.45 * a, cy - 0.05 * a, 4)], 1)
    lm[31:36] = np.stack([np.linspace(cx - 0.2 * a, cx + 0.2 * a, 5), np.full(5, cy + 0.05 * a)], 1)
    ang = np.array([np.pi, 2 * np.pi / 3, np.pi / 3, 0, -np.pi / 3, -2 * np.pi / 3])
    for first, ex in ((36, cx - 0.4 * a), (42, cx + 0.4 * a)):
        lm[first:first + 6] = np.stack([ex + 0.15 * a * np.cos(ang),
                                        cy - 0.4 * a - 0.06 * a * np.sin(ang)], 1)
    mx, my, rx = cx, cy + 0.45 * a, 0.35 * a + width_px
    up = np.pi - np.arange(7) * np.pi / 6
    lm[48:55] = np.stack([mx + rx * np.cos(up), my - 0.1 * a * np.sin(up)], 1)
    lo = -np.arange(1, 6) * np.pi / 6
    lm[55:60] = np.stack([mx + rx * np.cos(lo), my - (0.12 * a + open_px) * np.sin(lo)], 1)
    iu = np.pi - np.arange(5) * np.pi / 4
    lm[60:65] = np.stack([mx + 0.7 * rx * np.cos(iu), my - 0.02 * a * np.sin(iu)], 1)
    il = -np.arange(1, 4) * np.pi / 4
    lm[65:68] = np.stack([mx + 0.7 * rx * np.cos(il), my - (0.02 * a + open_px) * np.sin(il)], 1)
    if tilt:
        c, s = np.cos(tilt), np.sin(tilt)
        lm = (lm - [cx, cy]) @ np.array([[c, s], [-s, c]]) + [cx, cy]
    return lm
