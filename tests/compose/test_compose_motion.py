"""Head motion and keyword gestures: deterministic, smooth, on the word's timing."""

from __future__ import annotations

import dataclasses
import tomllib

import numpy as np
import pytest

from anchor.compose.motion import (
    REST,
    Gesture,
    GestureSet,
    HeadMotion,
    HeadWarper,
    MotionDirector,
    Pose,
    drawn_gesture,
    gesture_motion_from_landmarks,
    gestures_toml,
    head_motion_enabled,
    parse_gestures,
)
from anchor.config import MotionConfig
from anchor.errors import ComposeError

FPS = 25
SPF = 640


def _speech(seconds: float, seed: int = 0, accents: float = 0.22) -> list[np.ndarray]:
    """Per-frame audio with irregular loud syllables (`accents` of the frames) over a quieter
    floor."""
    rng = np.random.default_rng(seed)
    n = int(seconds * FPS)
    loud = rng.random(n) < accents
    return [(0.3 if loud[i] else 0.05) * rng.standard_normal(SPF).astype(np.float32)
            for i in range(n)]


def _poses(director: MotionDirector, frames: list[np.ndarray], source: str = "say/1",
           words: dict[int, tuple[str, ...]] | None = None) -> list[Pose]:
    return [director.step(i, a, True, source, (words or {}).get(i, ()))
            for i, a in enumerate(frames)]


def _head(cfg: MotionConfig | None = None) -> MotionDirector:
    return MotionDirector(cfg or MotionConfig(), FPS, head=True, gestures=GestureSet())


def test_head_motion_is_deterministic_under_a_seed() -> None:
    frames = _speech(8.0)
    a = _poses(_head(), frames)
    b = _poses(_head(), frames)
    assert a == b
    c = _poses(_head(MotionConfig(seed=7)), frames)
    assert c != a
    assert any(not p.is_rest for p in a)


def test_head_motion_off_is_the_rest_pose() -> None:
    d = MotionDirector(MotionConfig(), FPS, head=False, gestures=GestureSet())
    assert not d.active
    assert all(p == REST for p in _poses(d, _speech(3.0)))


def test_head_motion_is_small_and_smooth() -> None:
    cfg = MotionConfig()
    poses = _poses(_head(cfg), _speech(20.0))
    arr = np.array([p.as_array() for p in poses])
    assert np.abs(arr[:, 0]).max() <= cfg.mode_shift + cfg.drift_shift + 1e-9
    assert np.abs(arr[:, 1]).max() <= cfg.mode_shift + cfg.drift_shift + 2 * cfg.nod_shift
    step = np.abs(np.diff(arr, axis=0))
    # no frame-to-frame jump: a nod or a mode change is spread over several frames
    assert step[:, 0].max() < 0.25 * cfg.mode_shift
    assert step[:, 1].max() < 0.6 * cfg.nod_shift


def test_nods_follow_prosody_not_a_metronome() -> None:
    frames = _speech(60.0, seed=3, accents=0.05)
    loud = [float(np.mean(a * a)) > 0.01 for a in frames]
    hm = HeadMotion(MotionConfig(), FPS)
    nod_frames = []
    for i, a in enumerate(frames):
        before = hm._last_nod
        hm.step(a, True, False)
        if hm._last_nod != before:
            nod_frames.append(i)
    gaps = np.diff(nod_frames)
    assert len(nod_frames) >= 8
    assert all(loud[i] for i in nod_frames)  # a nod starts on a loud (accented) frame
    assert gaps.min() >= MotionConfig().nod_min_interval_s * FPS
    assert gaps.std() > 0.2 * gaps.mean()  # irregular, as the speech is
    quiet = HeadMotion(MotionConfig(), FPS)  # silence makes no nods
    for _ in range(100):
        quiet.step(np.zeros(SPF, np.float32), False, False)
    assert quiet._last_nod < 0


def test_auto_means_motion_for_stills_and_short_loops_only() -> None:
    cfg = MotionConfig()
    assert head_motion_enabled(cfg, 1, FPS) and head_motion_enabled(cfg, 75, FPS)
    assert not head_motion_enabled(cfg, 60 * FPS, FPS)
    assert head_motion_enabled(dataclasses.replace(cfg, head="on"), 60 * FPS, FPS)
    assert not head_motion_enabled(dataclasses.replace(cfg, head="off"), 1, FPS)
    with pytest.raises(ComposeError, match="motion.head"):
        head_motion_enabled(dataclasses.replace(cfg, head="sometimes"), 1, FPS)


def _nod_set(probability: float = 1.0) -> GestureSet:
    return GestureSet.of([Gesture("nod", ("yes", "breaking news"), drawn_gesture("lean", 1.4, FPS),
                                  probability=probability, ramp_in_s=0.6, hold_s=0.3,
                                  ramp_out_s=0.5)])


def test_gesture_reaches_full_weight_one_ramp_after_its_word() -> None:
    g = _nod_set()
    d = MotionDirector(MotionConfig(), FPS, head=False, gestures=g)
    frames = [np.zeros(SPF, np.float32)] * 100
    word_frame = 30
    poses = _poses(d, frames, words={word_frame: ("yes",)})
    dy = np.array([p.dy for p in poses])
    full = g.gestures[0].motion[0, 1]  # the lean's held offset
    assert np.all(dy[:word_frame] == 0)  # nothing before the word
    first_full = int(np.flatnonzero(np.isclose(dy, full))[0])
    assert abs(first_full - (word_frame + 0.6 * FPS)) <= 1
    # blends in and out without a jump, and ends at rest
    assert np.abs(np.diff(dy)).max() < 0.25 * full
    assert dy[word_frame + round(1.4 * FPS) + 1:].max() == 0


def test_a_phrase_triggers_on_its_last_word_and_probability_zero_never() -> None:
    d = MotionDirector(MotionConfig(), FPS, head=False, gestures=_nod_set())
    _poses(d, [np.zeros(SPF, np.float32)] * 40,
           words={5: ("Breaking",), 9: ("news:",), 12: ("news",)})
    assert d.gestures is not None and d.gestures.started == [("nod", 9)]
    never = MotionDirector(MotionConfig(), FPS, head=False, gestures=_nod_set(0.0))
    _poses(never, [np.zeros(SPF, np.float32)] * 20, words={3: ("yes",)})
    assert never.gestures is not None and never.gestures.started == []


def test_gestures_off_in_config() -> None:
    d = MotionDirector(MotionConfig(gestures=False), FPS, head=False, gestures=_nod_set())
    assert d.gestures is None and not d.active


def test_gesture_dictionary_round_trips_and_rejects_bad_entries() -> None:
    g = _nod_set(0.5)
    back = parse_gestures(tomllib.loads(gestures_toml(g)), "gestures.toml")
    assert back.gestures[0].keywords == g.gestures[0].keywords
    assert back.gestures[0].probability == 0.5
    np.testing.assert_allclose(back.gestures[0].motion, g.gestures[0].motion, atol=1e-5)
    bad = [
        ({"gesture": [{"name": "x", "keywords": [], "motion": [[0, 0, 0]]}]}, "keywords"),
        ({"gesture": [{"name": "x", "keywords": ["a"], "motion": [[0, 0]]}]}, "motion"),
        ({"gesture": [{"name": "x", "keywords": ["a"], "motion": [[0, 0, 0]],
                       "probability": 2}]}, "probability"),
        ({"gesture": [{"name": "x", "keywords": ["a"], "motion": [[0.9, 0, 0]]}]}, "beyond"),
        ({"gesture": [{"keywords": ["a"], "motion": [[0, 0, 0]]}]}, "name"),
        ({"gestures": []}, "unknown key"),
    ]
    for data, match in bad:
        with pytest.raises(ComposeError, match=match):
            parse_gestures(data, "g.toml")


def test_recorded_gesture_motion_is_relative_to_its_first_frame() -> None:
    rng = np.random.default_rng(0)
    face = rng.uniform(40, 160, (68, 2))
    frames = np.stack([face + [0, 2.0 * k] for k in range(10)])  # the head moves down 2 px/frame
    m = gesture_motion_from_landmarks(frames, face_box_size=100.0)
    np.testing.assert_allclose(m[0], 0, atol=1e-9)
    np.testing.assert_allclose(m[:, 1], 0.02 * np.arange(10), atol=1e-9)
    np.testing.assert_allclose(m[:, [0, 2]], 0, atol=1e-9)


def test_warp_moves_the_head_and_leaves_the_rest() -> None:
    h, w = 200, 160
    img = np.zeros((h, w, 3), np.uint8)
    img[60:80, 70:90] = 255  # a bright square in the face box
    warper = HeadWarper(w, h, (50, 40, 110, 110))
    assert warper.warp(img, REST) is img
    out = warper.warp(img, Pose(dx=0.0, dy=5 / 70, tilt_deg=0.0))  # 5 px down (box is 70 high)
    ys = np.flatnonzero(out[:, 80, 0] > 127)
    assert ys.min() == 65 and ys.max() == 84
    np.testing.assert_array_equal(out[190:], img[190:])  # below the shoulders nothing moves
    assert out.dtype == np.uint8 and out.shape == img.shape
