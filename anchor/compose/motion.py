"""Head motion and keyword gestures: a pose per output frame, applied as a smooth head warp.

A still photo or a short idle loop looks frozen while it talks. Two sources of motion, as in
the seeds this follows (speech-driven head motion; keyword-triggered gestures):

- `HeadMotion`: slow pose *modes* (a small offset and tilt held for a phrase, eased into over
  `mode_change_s` whenever a sentence starts or every `mode_phrase_s` of speech, back to rest in
  long pauses), a slow sway (three incommensurate sines per axis), plus *nods* at prosodic peaks (a frame whose energy jumps `nod_threshold_db` above its running level), each a
  smooth dip with a random depth. Peaks come from the speech, so the rhythm follows it, not a
  metronome. A seeded generator makes it deterministic: the same seed and speech give the same
  motion.
- `GesturePlayer`: the avatar's gesture dictionary (`gestures.toml` in the bundle): keyword or
  phrase -> a short head-motion clip taken from the recording (or drawn, for the default
  avatar), with a probability, a ramp-in, a hold and a ramp-out. With text input the words are
  known, so a gesture starts on its word's first frame and reaches full weight `ramp_in_s` later.

`MotionDirector` sums both into one `Pose` per output frame; `HeadWarper` moves the head region
of a composited frame by it (rotation about the neck plus a shift, fading to nothing over the
shoulders). Warping the composited frame moves the rendered face, its mouth and the template
together, exactly as warping the template before rendering would for a rigid head move, and
keeps the compositor's per-template geometry cache valid.
"""

from __future__ import annotations

import logging
import math
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from anchor.config import MotionConfig
from anchor.errors import ComposeError

log = logging.getLogger(__name__)

HEAD_MODES = ("auto", "on", "off")
GESTURE_KEYS = {"name", "keywords", "probability", "ramp_in_s", "hold_s", "ramp_out_s",
                "motion", "source"}


@dataclass(frozen=True)
class Pose:
    """Head offset of one frame: dx, dy as fractions of the face box (right, down), tilt in
    degrees (clockwise on screen)."""

    dx: float = 0.0
    dy: float = 0.0
    tilt_deg: float = 0.0

    def __add__(self, other: Pose) -> Pose:
        return Pose(self.dx + other.dx, self.dy + other.dy, self.tilt_deg + other.tilt_deg)

    def scaled(self, w: float) -> Pose:
        return Pose(self.dx * w, self.dy * w, self.tilt_deg * w)

    @property
    def is_rest(self) -> bool:
        return abs(self.dx) < 1e-4 and abs(self.dy) < 1e-4 and abs(self.tilt_deg) < 1e-3

    def as_array(self) -> np.ndarray:
        return np.array([self.dx, self.dy, self.tilt_deg], np.float64)


REST = Pose()


def _smoothstep(x: float) -> float:
    x = min(1.0, max(0.0, x))
    return x * x * (3.0 - 2.0 * x)


def head_motion_enabled(cfg: MotionConfig, n_templates: int, fps: int) -> bool:
    """Whether head motion runs for an avatar with `n_templates` frames of footage."""
    if cfg.head not in HEAD_MODES:
        raise ComposeError(f"motion.head must be one of {', '.join(HEAD_MODES)} (got {cfg.head!r})")
    if cfg.head == "auto":
        return n_templates <= cfg.auto_max_template_s * fps
    return cfg.head == "on"


class HeadMotion:
    """Speech-driven head pose, one `step` per output frame, in order."""

    REST_AFTER_S = 1.5  # this long without speech: ease back to the rest pose

    def __init__(self, cfg: MotionConfig, fps: int) -> None:
        self.cfg = cfg
        self.fps = fps
        self._rng = np.random.default_rng(cfg.seed)
        self._from = REST
        self._to = REST
        self._since = 0  # frames since the current mode began
        self._silent = 0  # frames since the last speech frame
        self._level: float | None = None  # running energy of speech frames (dB)
        self._prev_db = -120.0
        self._last_nod = -10**9
        self._nods: list[tuple[int, float]] = []  # (start frame, depth)
        self._n = 0
        self._spoken = 0  # speech frames since the mode last changed
        self._next_phrase = self._phrase_frames()
        # Slow sway: three incommensurate sines per axis (0.05-0.35 Hz), random phases.
        self._drift_f = self._rng.uniform(0.05, 0.35, (3, 3))
        self._drift_p = self._rng.uniform(0.0, 2 * math.pi, (3, 3))

    def _phrase_frames(self) -> int:
        lo, hi = self.cfg.mode_phrase_s
        return max(1, round(self._rng.uniform(lo, max(lo, hi)) * self.fps))

    def _drift(self, i: int) -> Pose:
        t = i / self.fps
        v = np.sin(2 * math.pi * self._drift_f * t + self._drift_p).sum(axis=1) / 3.0
        c = self.cfg
        return Pose(c.drift_shift * float(v[0]), 0.6 * c.drift_shift * float(v[1]),
                    c.drift_tilt_deg * float(v[2]))

    def _mode(self) -> Pose:
        w = _smoothstep(self._since / max(1.0, self.cfg.mode_change_s * self.fps))
        return self._from.scaled(1.0 - w) + self._to.scaled(w)

    def _new_mode(self, target: Pose) -> None:
        self._from, self._to, self._since = self._mode(), target, 0
        self._spoken = 0
        self._next_phrase = self._phrase_frames()

    def _random_mode(self) -> Pose:
        c = self.cfg
        u = self._rng.uniform(-1.0, 1.0, 3)
        return Pose(float(c.mode_shift * u[0]), float(0.6 * c.mode_shift * u[1]),
                    float(c.mode_tilt_deg * u[2]))

    def step(self, audio: np.ndarray, speech: bool, new_sentence: bool) -> Pose:
        """The pose of the next frame, given its audio, VAD state and whether a new sentence
        (segment) starts with it."""
        c, i = self.cfg, self._n
        self._n += 1
        if new_sentence or (speech and self._spoken >= self._next_phrase):
            self._new_mode(self._random_mode())  # a new sentence, or a new phrase within one
        self._spoken += 1 if speech else 0
        self._silent = 0 if speech else self._silent + 1
        if self._silent == int(self.REST_AFTER_S * self.fps) and self._to != REST:
            self._new_mode(REST)
        self._since += 1
        x = np.asarray(audio, np.float64)
        db = 10.0 * math.log10(float(np.mean(x * x)) + 1e-12) if x.size else -120.0
        if speech:
            if self._level is None:
                self._level = db
            rising = db >= self._prev_db
            if (rising and db > self._level + c.nod_threshold_db
                    and i - self._last_nod >= c.nod_min_interval_s * self.fps
                    and self._rng.random() < c.nod_probability):
                strength = min(1.0, max(0.5, (db - self._level) / (2.0 * c.nod_threshold_db)))
                self._nods.append((i, c.nod_shift * strength * self._rng.uniform(0.7, 1.0)))
                self._last_nod = i
            self._level += 0.08 * (db - self._level)
        self._prev_db = db
        tau = max(1e-3, c.nod_peak_s * self.fps)
        dip = 0.0
        alive = []
        for start, depth in self._nods:
            t = (i - start) / tau
            if t <= 5.0:
                alive.append((start, depth))
                dip += depth * t * t * math.exp(2.0 * (1.0 - t))  # smooth start, 1 at tau
        self._nods = alive
        # a nod also pitches: a slight roll
        return self._mode() + self._drift(i) + Pose(0.0, dip, -8.0 * dip)


# -- gestures -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Gesture:
    """One entry of the gesture dictionary. `motion` is (K, 3): per frame dx, dy (of the face
    box) and tilt (degrees), relative to the clip's first frame."""

    name: str
    keywords: tuple[str, ...]
    motion: np.ndarray
    probability: float = 1.0
    ramp_in_s: float = 0.6
    hold_s: float = 0.3
    ramp_out_s: float = 0.5
    source: str = ""

    def duration_frames(self, fps: int) -> int:
        return max(1, round((self.ramp_in_s + self.hold_s + self.ramp_out_s) * fps))

    def weight(self, j: int, fps: int) -> float:
        """Blend weight `j` frames after the start: 0 -> 1 over ramp_in, 1 for hold, -> 0."""
        t = j / fps
        if t < 0:
            return 0.0
        if t < self.ramp_in_s:
            return _smoothstep(t / self.ramp_in_s)
        t -= self.ramp_in_s
        if t <= self.hold_s:
            return 1.0
        t -= self.hold_s
        return 1.0 - _smoothstep(t / self.ramp_out_s) if self.ramp_out_s > 0 else 0.0

    def pose(self, j: int, fps: int) -> Pose:
        if j < 0 or j >= self.duration_frames(fps):
            return REST
        # The clip plays at the gesture's own pace, stretched over the gesture's duration.
        k = min(len(self.motion) - 1, int(j * len(self.motion) / self.duration_frames(fps)))
        dx, dy, tilt = (float(v) for v in self.motion[k])
        return Pose(dx, dy, tilt).scaled(self.weight(j, fps))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "keywords": list(self.keywords), "probability": self.probability,
            "ramp_in_s": self.ramp_in_s, "hold_s": self.hold_s, "ramp_out_s": self.ramp_out_s,
            "source": self.source,
            "motion": [[round(float(v), 5) for v in row] for row in self.motion],
        }


def normalise_phrase(text: str) -> tuple[str, ...]:
    """'Breaking news!' -> ('breaking', 'news'): the TTS's own word splitting (`word_spans`),
    lower-cased, so a keyword matches the words the engines report."""
    from anchor.tts.base import word_spans

    return tuple(label.lower() for _start, _end, label in word_spans(text))


@dataclass(frozen=True)
class GestureSet:
    gestures: tuple[Gesture, ...] = ()
    _phrases: dict[tuple[str, ...], int] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, gestures: Iterable[Gesture]) -> GestureSet:
        gs = tuple(gestures)
        phrases: dict[tuple[str, ...], int] = {}
        for i, g in enumerate(gs):
            for k in g.keywords:
                key = normalise_phrase(k)
                if key:
                    phrases.setdefault(key, i)
        return cls(gs, phrases)

    @property
    def longest_phrase(self) -> int:
        return max((len(k) for k in self._phrases), default=0)

    def match(self, recent: Sequence[str]) -> Gesture | None:
        """The gesture whose phrase ends with the last of `recent` words (longest first)."""
        for n in range(min(self.longest_phrase, len(recent)), 0, -1):
            i = self._phrases.get(tuple(recent[-n:]))
            if i is not None:
                return self.gestures[i]
        return None

    def __len__(self) -> int:
        return len(self.gestures)


def parse_gestures(data: dict[str, Any], where: str) -> GestureSet:
    """A gesture dictionary from parsed TOML (`[[gesture]]` tables); one-line errors."""
    entries = data.get("gesture", [])
    extra = set(data) - {"gesture"}
    if extra:
        raise ComposeError(f"{where}: unknown key(s) {', '.join(sorted(extra))} (want [[gesture]])")
    if not isinstance(entries, list):
        raise ComposeError(f"{where}: 'gesture' must be an array of tables ([[gesture]])")
    out = []
    for n, e in enumerate(entries, 1):
        at = f"{where}: gesture {n}"
        if not isinstance(e, dict):
            raise ComposeError(f"{at} is not a table")
        unknown = set(e) - GESTURE_KEYS
        if unknown:
            raise ComposeError(f"{at}: unknown key(s) {', '.join(sorted(unknown))}")
        name = e.get("name")
        if not isinstance(name, str) or not name:
            raise ComposeError(f"{at}: needs a name")
        kw = e.get("keywords")
        if not isinstance(kw, list) or not kw or not all(isinstance(k, str) and normalise_phrase(k)
                                                          for k in kw):
            raise ComposeError(f"{at} ({name}): keywords must be a non-empty list of words")
        try:
            motion = np.asarray(e.get("motion", []), np.float64)
        except (TypeError, ValueError):
            raise ComposeError(f"{at} ({name}): motion must be rows of [dx, dy, tilt]") from None
        if motion.ndim != 2 or motion.shape[1] != 3 or len(motion) < 1 \
                or not np.all(np.isfinite(motion)):
            raise ComposeError(f"{at} ({name}): motion must be rows of [dx, dy, tilt]")
        if np.abs(motion[:, :2]).max() > 0.25 or np.abs(motion[:, 2]).max() > 20:
            raise ComposeError(f"{at} ({name}): motion beyond 0.25 of the face box or 20 degrees")
        nums = {}
        for key, default, lo, hi in (("probability", 1.0, 0.0, 1.0), ("ramp_in_s", 0.6, 0.0, 5.0),
                                     ("hold_s", 0.3, 0.0, 10.0), ("ramp_out_s", 0.5, 0.0, 5.0)):
            v = e.get(key, default)
            if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
                raise ComposeError(f"{at} ({name}): {key} must be a number in [{lo}, {hi}]")
            nums[key] = float(v)
        out.append(Gesture(name, tuple(kw), motion, source=str(e.get("source", "")), **nums))
    return GestureSet.of(out)


def load_gestures(path: str | Path) -> GestureSet:
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ComposeError(f"{p}: not a readable gesture file ({exc})") from None
    return parse_gestures(data, str(p))


def gestures_toml(gestures: GestureSet) -> str:
    """The dictionary as `gestures.toml` text (the bundle's file)."""
    from anchor.avatar import toml_writer

    blocks = []
    for g in gestures.gestures:
        d = g.to_dict()
        motion = d.pop("motion")
        lines = ["[[gesture]]"] + [toml_writer.dumps({k: v}).strip() for k, v in d.items()]
        lines.append("motion = [\n" + "".join(f"  {row},\n" for row in motion) + "]")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


class GesturePlayer:
    """Starts a gesture when its keyword is spoken (with its probability) and one is not already
    playing; `pose(index)` is its contribution at output frame `index`."""

    def __init__(self, gestures: GestureSet, fps: int, seed: int = 0) -> None:
        self.gestures = gestures
        self.fps = fps
        self._rng = np.random.default_rng(seed + 1)
        self._recent: list[str] = []
        self.playing: tuple[Gesture, int] | None = None
        self.started: list[tuple[str, int]] = []  # (name, start frame), for tests and logs

    def words(self, index: int, words: Sequence[str]) -> None:
        """Words whose speech starts at output frame `index`."""
        for w in words:
            self._recent = [*self._recent[-7:], *normalise_phrase(w)]
            g = self.gestures.match(self._recent)
            if g is None:
                continue
            busy = self.playing is not None and \
                index - self.playing[1] < self.playing[0].duration_frames(self.fps)
            if not busy and self._rng.random() < g.probability:
                self.playing = (g, index)
                self.started.append((g.name, index))

    def pose(self, index: int) -> Pose:
        if self.playing is None:
            return REST
        g, start = self.playing
        return g.pose(index - start, self.fps)


class MotionDirector:
    """Head motion + gestures for one session's output timeline: `step` once per frame, in
    frame order, with what that frame carries."""

    def __init__(self, cfg: MotionConfig, fps: int, *, head: bool, gestures: GestureSet) -> None:
        self.head = HeadMotion(cfg, fps) if head else None
        self.gestures = GesturePlayer(gestures, fps, cfg.seed) \
            if cfg.gestures and len(gestures) else None
        self._source = ""

    @property
    def active(self) -> bool:
        return self.head is not None or self.gestures is not None

    def step(self, index: int, audio: np.ndarray, speech: bool, source: str,
             words: Sequence[str] = ()) -> Pose:
        new_sentence = bool(source) and source != self._source
        self._source = source
        pose = REST
        if self.head is not None:
            pose = self.head.step(audio, speech, new_sentence)
        if self.gestures is not None:
            if words:
                self.gestures.words(index, words)
            pose = pose + self.gestures.pose(index)
        return pose


# -- the warp -----------------------------------------------------------------------------------
class HeadWarper:
    """Moves the head region of (H, W, 3) frames by a `Pose`: a rotation about the neck and a
    shift, full inside an ellipse around the face box and fading out towards the shoulders and
    the frame edges."""

    def __init__(self, width: int, height: int, face_box: Sequence[float]) -> None:
        x0, y0, x1, y1 = (float(v) for v in face_box)
        bw, bh = max(1.0, x1 - x0), max(1.0, y1 - y0)
        self.box_w, self.box_h = bw, bh
        cx, cy = 0.5 * (x0 + x1), 0.5 * (y0 + y1) - 0.1 * bh  # a little up: the hair moves too
        self.pivot = (cx, y1 + 0.15 * bh)  # the neck, below the chin
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        r = np.sqrt(((xs - cx) / (0.75 * bw)) ** 2 + ((ys - cy) / (0.8 * bh)) ** 2)
        t = np.clip((r - 1.0) / 0.8, 0.0, 1.0)
        mask = 1.0 - t * t * (3.0 - 2.0 * t)
        rows = np.flatnonzero(mask.max(axis=1) > 0)
        cols = np.flatnonzero(mask.max(axis=0) > 0)
        # Only the region the mask touches is remapped (the rest of the frame never moves).
        self.roi = (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)
        r0, r1, c0, c1 = self.roi
        self._x = xs[r0:r1, c0:c1]
        self._y = ys[r0:r1, c0:c1]
        self._px = self._x - self.pivot[0]
        self._py = self._y - self.pivot[1]
        self._mask = mask[r0:r1, c0:c1].astype(np.float32)

    def warp(self, image: np.ndarray, pose: Pose) -> np.ndarray:
        """A warped copy (the same array when the pose is the rest pose)."""
        if pose.is_rest:
            return image
        a = math.radians(float(pose.tilt_deg))
        c1, s = math.cos(a) - 1.0, math.sin(a)
        tx, ty = float(pose.dx) * self.box_w, float(pose.dy) * self.box_h
        # Output pixel p shows source pixel p - mask * (R p' - p' + t) (p' about the pivot).
        dx = self._mask * (c1 * self._px - s * self._py + tx)
        dy = self._mask * (s * self._px + c1 * self._py + ty)
        map_x = (self._x - dx).astype(np.float32, copy=False)
        map_y = (self._y - dy).astype(np.float32, copy=False)
        r0, r1, c0, c1_ = self.roi
        out = image.copy()
        out[r0:r1, c0:c1_] = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR,
                                       borderMode=cv2.BORDER_REPLICATE)
        return out


def gesture_motion_from_landmarks(landmarks: np.ndarray, face_box_size: float) -> np.ndarray:
    """(K, 68, 2) landmarks of a recorded gesture -> (K, 3) motion relative to its first frame:
    the shift of the eye-and-nose centre (of the face box) and the change of the eye line's
    angle (degrees)."""
    lm = np.asarray(landmarks, np.float64)
    if lm.ndim != 3 or lm.shape[1:] != (68, 2) or len(lm) < 1:
        raise ComposeError(f"gesture landmarks must be (K, 68, 2), got {lm.shape}")
    left, right = lm[:, 36:42].mean(axis=1), lm[:, 42:48].mean(axis=1)
    centre = np.concatenate([lm[:, 27:36], lm[:, 36:48]], axis=1).mean(axis=1)
    eye = right - left
    angle = np.degrees(np.arctan2(eye[:, 1], eye[:, 0]))
    size = max(1.0, float(face_box_size))
    return np.stack([(centre[:, 0] - centre[0, 0]) / size, (centre[:, 1] - centre[0, 1]) / size,
                     angle - angle[0]], axis=1)


def drawn_gesture(kind: str, seconds: float, fps: int) -> np.ndarray:
    """(K, 3) motion of a drawn gesture for avatars without footage of one: "nod" (two dips),
    "tilt" (a held roll, head slightly aside) or "lean" (towards the camera: down and in)."""
    k = max(2, round(seconds * fps))
    t = np.linspace(0.0, 1.0, k)
    z = np.zeros(k)
    if kind == "nod":
        dip = 0.03 * np.sin(2 * np.pi * 2 * t).clip(0, None)
        return np.stack([z, dip, -6.0 * dip], axis=1)
    if kind == "tilt":
        return np.stack([0.015 + z, 0.005 + z, 4.0 + z], axis=1)
    if kind == "lean":
        return np.stack([z, 0.025 + z, z], axis=1)
    raise ComposeError(f"unknown drawn gesture {kind!r} (nod, tilt, lean)")


# -- gestures from a recording (build-avatar --gestures) -----------------------------------------
SPEC_KEYS = {"name", "keywords", "probability", "ramp_in_s", "hold_s", "ramp_out_s", "start_s",
             "end_s"}
MAX_SHIFT, MAX_TILT = 0.25, 20.0  # what the head warp can show without tearing


def load_gesture_spec(path: str | Path) -> list[dict[str, Any]]:
    """A `--gestures FILE.toml` spec: `[[gesture]]` tables with name, keywords, start_s, end_s
    (the clip of the recording that shows the gesture) and optionally probability, ramp_in_s,
    hold_s, ramp_out_s. Checked here, before any training starts (one-line errors)."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ComposeError(f"{p}: not a readable gesture file ({exc})") from None
    entries = data.get("gesture")
    if set(data) - {"gesture"} or not isinstance(entries, list) or not entries:
        raise ComposeError(f"{p}: expected one or more [[gesture]] tables")
    out = []
    for n, e in enumerate(entries, 1):
        if not isinstance(e, dict):
            raise ComposeError(f"{p}: gesture {n} is not a table")
        unknown = set(e) - SPEC_KEYS
        if unknown:
            raise ComposeError(f"{p}: gesture {n}: unknown key(s) {', '.join(sorted(unknown))}")
        s, t = e.get("start_s"), e.get("end_s")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (s, t)) \
                or not 0 <= s < t or t - s > 10:  # type: ignore[operator]
            raise ComposeError(f"{p}: gesture {n}: needs start_s < end_s (seconds of the video, "
                               "at most 10 s apart)")
        # The rest is checked by the same rules as a bundle's dictionary.
        probe = {k: v for k, v in e.items() if k not in ("start_s", "end_s")}
        parse_gestures({"gesture": [{**probe, "motion": [[0.0, 0.0, 0.0]]}]}, f"{p}")
        out.append(dict(e))
    return out


def gestures_from_recording(spec: list[dict[str, Any]], landmarks: np.ndarray, boxes: np.ndarray,
                            fps: int, source: str) -> GestureSet:
    """The spec's clips cut from a recording's per-frame landmarks (T, 68, 2) and face boxes
    (T, 4): each becomes the head motion of its frames, relative to its first frame."""
    lm = np.asarray(landmarks, np.float64)
    n_frames = len(lm)
    size = float(np.median(np.asarray(boxes, np.float64)[:, 3] - np.asarray(boxes)[:, 1]))
    out = []
    for e in spec:
        a, b = int(e["start_s"] * fps + 0.5), int(e["end_s"] * fps + 0.5)  # half up, not even
        if b > n_frames:
            raise ComposeError(f"gesture {e['name']!r}: {e['start_s']}-{e['end_s']} s is past the "
                               f"end of the recording ({n_frames / fps:.1f} s)")
        motion = gesture_motion_from_landmarks(lm[a:max(b, a + 1)], size)
        big = np.abs(motion[:, :2]).max() > MAX_SHIFT or np.abs(motion[:, 2]).max() > MAX_TILT
        if big:
            log.warning("gesture %r moves more than the head warp can show: clipped", e["name"])
        motion[:, :2] = motion[:, :2].clip(-MAX_SHIFT, MAX_SHIFT)
        motion[:, 2] = motion[:, 2].clip(-MAX_TILT, MAX_TILT)
        # A gesture's duration is its clip's unless ramp/hold say otherwise.
        length = (b - a) / fps
        ramp_in = float(e.get("ramp_in_s", min(0.6, length / 2)))
        ramp_out = float(e.get("ramp_out_s", min(0.5, length / 3)))
        hold = float(e.get("hold_s", max(0.0, length - ramp_in - ramp_out)))
        out.append(Gesture(
            str(e["name"]), tuple(e["keywords"]), motion,
            probability=float(e.get("probability", 1.0)), ramp_in_s=ramp_in, hold_s=hold,
            ramp_out_s=ramp_out, source=f"{source} {e['start_s']}-{e['end_s']} s",
        ))
    return GestureSet.of(out)
