"""Who speaks in each training clip, and folds that hold whole speakers out.

A mouth model that is scored on the last 15 % of clips it also trained on has heard every test
voice already. Leave-speaker-out folds instead keep all clips of a speaker together, so a fold's
model is scored only on people it has never heard. Speaker identity comes from the clip names of
the shared media (`../shared/media/README.md`); clips whose speaker is not known for certain are
grouped with every clip that might be the same person (all GRID sentences, all VoxCeleb
interviews), which only makes the held-out speakers stricter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

# Clips that other talking-head systems generated (VASA-1, EMO): realistic, but not real mouths.
GENERATED = re.compile(r"^vexpress_(vasa-1|emo)_")

_GROUPS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^lipnet_grid_"), "grid"),  # GRID sentences: speaker ids are not all known
    (re.compile(r"^pcavs_voxceleb_"), "voxceleb"),  # interviews: some may share a speaker
    (re.compile(r"^styletalk_([a-z]+)_?clip", re.IGNORECASE), r"styletalk_\1"),
)


def is_generated(clip: str) -> bool:
    return GENERATED.match(clip) is not None


def speaker_of(clip: str) -> str:
    """The speaker group of a clip name (the prepared clip's name: the video's stem)."""
    for pattern, group in _GROUPS:
        m = pattern.match(clip)
        if m:
            return m.expand(group).lower()
    return clip.lower()


def speaker_groups(clips: Sequence[str]) -> dict[str, list[str]]:
    """speaker -> its clips, in first-seen order."""
    groups: dict[str, list[str]] = {}
    for name in clips:
        groups.setdefault(speaker_of(name), []).append(name)
    return groups


def speaker_folds(frames: Mapping[str, int], folds: int) -> list[list[str]]:
    """Clip names per fold, whole speakers per fold, folds balanced by frames.

    Deterministic: the speaker with the most frames goes first, each to the fold with the fewest
    frames so far (ties to the lower fold index).
    """
    if folds < 2:
        raise ValueError("leave-speaker-out needs at least 2 folds")
    groups = speaker_groups(list(frames))
    if len(groups) < folds:
        raise ValueError(f"{len(groups)} speakers cannot fill {folds} folds")
    order = sorted(groups, key=lambda s: (-sum(frames[c] for c in groups[s]), s))
    out: list[list[str]] = [[] for _ in range(folds)]
    size = [0] * folds
    for speaker in order:
        k = min(range(folds), key=lambda i: (size[i], i))
        out[k].extend(groups[speaker])
        size[k] += sum(frames[c] for c in groups[speaker])
    return out
