"""Text input through the pipeline: TTS cues reach the mouth (phonemes) and gestures (words)."""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
from pipeline_helpers import SPF, speechlike

from anchor.compose.motion import Gesture, GestureSet, HeadWarper, drawn_gesture
from anchor.mouth.visemes import PhonemeCue, SpeechCues, VisemeShaper, WordCue
from anchor.pipeline.analysis import SpeechAnalyzer
from anchor.pipeline.items import OutputFrame
from anchor.pipeline.models import PipelineModels
from anchor.pipeline.offline import run_offline

FPS = 25


def _analyse(models: PipelineModels, x: np.ndarray, cues: SpeechCues | None,
             shaper: VisemeShaper | None) -> list:
    a = SpeechAnalyzer(models.audio, models.streaming, models.mouth_model, models.infer,
                       fps=FPS, shaper=shaper)
    a.begin(cues)
    out = []
    for i in range(0, len(x), 3200):
        out += a.push(x[i : i + 3200], 0.0)
    return out + a.finish()


def test_phonemes_close_the_lips_and_words_ride_with_their_frame(models: PipelineModels) -> None:
    bundle = models.engine.bundle  # type: ignore[attr-defined]
    ref = np.mean([t.mouth_mean for t in bundle.templates], axis=0)
    shaper = VisemeShaper(bundle.pca, reference=ref)
    x = speechlike(2.0)
    cues = SpeechCues(
        (PhonemeCue("bilabial", 0.40, 0.48, "b"), PhonemeCue("bilabial", 1.21, 1.27, "m")),
        (WordCue("bob", 0.40, 0.70), WordCue("met", 1.10, 1.40)),
    )
    plain = _analyse(models, x, cues, None)
    shaped = _analyse(models, x, cues, shaper)
    assert [f.index for f in shaped] == list(range(50))
    gaps = shaper.gap(np.stack([f.features for f in shaped]))
    assert abs(gaps[10]) < 1e-4 and abs(gaps[11]) < 1e-4  # 400-480 ms: frames 10, 11
    assert abs(gaps[30]) < 1e-4  # the "m" of "met": its midpoint frame
    untouched = [t for t in range(50) if t not in (9, 10, 11, 12, 29, 30, 31)]
    np.testing.assert_array_equal(np.stack([shaped[t].features for t in untouched]),
                                  np.stack([plain[t].features for t in untouched]))
    assert {f.index: f.words for f in shaped if f.words} == {10: ("bob",), 27: ("met",)}


def _render(models: PipelineModels, x: np.ndarray, cues: SpeechCues) -> list[OutputFrame]:
    frames: list[OutputFrame] = []
    asyncio.run(run_offline(x, models, frames.append, cues=cues))
    return frames


def test_a_keyword_gesture_moves_the_head_from_its_word_on(models: PipelineModels) -> None:
    bundle = models.engine.bundle  # type: ignore[attr-defined]
    w, h = models.engine.frame_size
    box = [float(v) for v in np.median(bundle.body.face_boxes, axis=0)]
    lean = Gesture("lean", ("breaking",), drawn_gesture("lean", 1.2, FPS), ramp_in_s=0.4,
                   hold_s=0.4, ramp_out_s=0.4)
    with_gesture = dataclasses.replace(models, gestures=GestureSet.of([lean]),
                                       warper=HeadWarper(w, h, box))
    x = speechlike(3.0)
    cues = SpeechCues((), (WordCue("the", 0.2, 0.4), WordCue("breaking", 1.0, 1.4)))
    base = _render(models, x, cues)
    moved = _render(with_gesture, x, cues)
    assert len(base) == len(moved) == 75
    diff = [not np.array_equal(a.image, b.image) for a, b in zip(base, moved, strict=True)]
    start = 25  # "breaking" starts at 1.0 s
    assert not any(diff[:start])  # nothing moves before the word
    assert all(diff[start + 2 : start + 28])  # ramping in, held and ramping out
    assert not any(diff[start + 31 :])  # and back at rest afterwards
    np.testing.assert_array_equal(np.concatenate([f.audio for f in moved])[: len(x)], x)
    assert all(len(f.audio) == SPF for f in moved)
