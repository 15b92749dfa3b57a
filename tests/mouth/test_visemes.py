"""Phoneme constraints on the mouth: lips meet on p/b/m, vowels open, rounded vowels narrow."""

from __future__ import annotations

import numpy as np
import pytest

from anchor.mouth.features import MouthPca
from anchor.mouth.visemes import (
    PhonemeCue,
    SpeechCues,
    VisemeShaper,
    VisemeTargets,
    WordCue,
    frame_weights,
    gap_of_points,
    phoneme_target,
)

FPS = 25


def _pca(seed: int = 0) -> MouthPca:
    """A PCA of random mouth shapes around an open mouth (inner gap 0.1)."""
    rng = np.random.default_rng(seed)
    base = np.zeros(40)
    base[2 * np.arange(17, 20) + 1] = 0.1  # lower inner lip 0.1 below the upper one
    return MouthPca.fit(base + 0.05 * rng.standard_normal((200, 40)), 10)


def test_weights_cover_the_phoneme_and_always_close_a_short_bilabial() -> None:
    cues = [PhonemeCue("bilabial", 0.085, 0.115), PhonemeCue("open", 0.20, 0.40)]
    w = frame_weights(cues, 12, FPS)
    # a 30 ms "p" inside frame 2 (80-120 ms): that frame closes fully, nothing else does
    assert w["bilabial"][2] == 1.0 and w["bilabial"].sum() == 1.0
    # the vowel covers frames 5..9 whole: weight 1 there, 0 elsewhere
    assert np.all(w["open"][5:10] == 1.0) and w["open"][:5].sum() == 0 and w["open"][10:].sum() == 0
    assert w["rounded"].sum() == 0


def test_partial_cover_gives_a_partial_weight() -> None:
    w = frame_weights([PhonemeCue("open", 0.0, 0.05)], 3, FPS)  # frame 0 whole, frame 1 a quarter
    assert w["open"][0] == 1.0 and w["open"][1] == pytest.approx(0.5) and w["open"][2] == 0


def test_bilabial_frames_close_exactly_and_other_frames_are_untouched() -> None:
    pca = _pca()
    shaper = VisemeShaper(pca)
    rng = np.random.default_rng(1)
    z = rng.standard_normal((6, 10)).astype(np.float32) * 0.1
    z[:, 0] += 1.0
    w = {"bilabial": np.array([0, 1, 0.5, 0, 0, 0], np.float32)}
    out = shaper.apply(z, w)
    assert shaper.gap(out[1]) == pytest.approx(0.0, abs=1e-5)
    before, after = shaper.gap(z[2]), shaper.gap(out[2])
    assert before > 0.01
    assert after == pytest.approx(0.5 * before, abs=1e-5)  # half weight: half way to closed
    np.testing.assert_allclose(out[[0, 3, 4, 5]], z[[0, 3, 4, 5]], atol=1e-6)
    # the gap functional is the same measure as on the decoded landmarks
    np.testing.assert_allclose(shaper.gap(out), gap_of_points(pca.inverse_transform(out)),
                               atol=1e-5)


def test_the_reference_mouth_makes_gaps_absolute() -> None:
    pca = _pca()
    ref = np.zeros(40)
    ref[2 * np.arange(17, 20) + 1] = 0.05
    plain, shifted = VisemeShaper(pca), VisemeShaper(pca, reference=ref)
    z = np.zeros((1, 10), np.float32)
    assert shifted.gap(z)[0] == pytest.approx(plain.gap(z)[0] + 0.05, abs=1e-6)
    out = shifted.apply(z, {"bilabial": np.ones(1, np.float32)})
    assert shifted.gap(out)[0] == pytest.approx(0.0, abs=1e-5)


def test_open_vowels_get_a_floor_and_rounded_vowels_narrow() -> None:
    shaper = VisemeShaper(_pca(), VisemeTargets(open_gap=0.2, rounded_width=0.8))
    z = np.zeros((2, 10), np.float32)
    wide = shaper.apply(z, {"open": np.ones(2, np.float32)})
    assert np.all(shaper.gap(wide) >= 0.2 - 1e-5)
    already = shaper.apply(wide, {"open": np.ones(2, np.float32)})
    np.testing.assert_allclose(already, wide, atol=1e-6)  # a floor, not a target
    narrow = shaper.apply(z, {"rounded": np.ones(2, np.float32)})
    assert np.all(shaper.width(narrow) <= 0.8 * shaper.neutral_width + 1e-5)


def test_strength_zero_is_the_tcn_alone() -> None:
    shaper = VisemeShaper(_pca(), strength=0.0)
    z = np.ones((3, 10), np.float32)
    np.testing.assert_array_equal(shaper.apply(z, {"bilabial": np.ones(3, np.float32)}), z)


def test_cues_concatenate_with_offsets() -> None:
    a = SpeechCues((PhonemeCue("bilabial", 0.0, 0.1, "b"),), (WordCue("bob", 0.0, 0.3),))
    b = SpeechCues((PhonemeCue("open", 0.0, 0.2, "aa"),), (WordCue("ah", 0.0, 0.2),))
    c = SpeechCues.concat([(0.0, a), (1.5, b)])
    assert [p.start_s for p in c.phonemes] == [0.0, 1.5]
    assert [(w.word, w.start_s) for w in c.words] == [("bob", 0.0), ("ah", 1.5)]


def test_phoneme_target_is_zero_on_closures_and_one_on_open_vowels() -> None:
    cues = [PhonemeCue("bilabial", 0.0, 0.08), PhonemeCue("open", 0.08, 0.24),
            PhonemeCue("other", 0.24, 0.4, "pau")]
    t = phoneme_target(cues, 10, FPS)
    assert t[0] == 0 and t[1] == 0 and np.all(t[2:6] == 1.0) and np.all(t[6:] == 0)
