"""Offline rendering with the live stages: audio file -> MP4 (H.264 + AAC) of matching lengths."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from pipeline_helpers import SPF, speechlike

from anchor.pipeline.items import OutputFrame
from anchor.pipeline.models import PipelineModels
from anchor.pipeline.offline import render_file_to_mp4, run_offline


def stream_durations(path: Path) -> tuple[float, float, int]:
    """(video seconds, audio seconds, decoded video frames) of an MP4."""
    with av.open(str(path)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        assert v.codec_context.name == "h264" and a.codec_context.name == "aac"
        n = sum(1 for _ in c.decode(video=0))
    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        samples = sum(f.samples for f in c.decode(audio=0))
        audio_s = samples / a.sample_rate
    return n / 25.0, audio_s, n


def test_render_mp4_durations_agree(models: PipelineModels, speech_wav: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    result = render_file_to_mp4(speech_wav, out, models)
    assert out.is_file() and result.path == out
    assert result.frames == 100  # 4 s at 25 fps
    video_s, audio_s, n = stream_durations(out)
    assert n == result.frames
    assert abs(video_s - audio_s) < 1 / 25
    assert 20 < result.speech_frames < 90  # speech in the middle, idle silence around it
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary file left behind


def test_mouth_moves_only_while_speaking(models: PipelineModels) -> None:
    x = np.concatenate([np.zeros(16000, np.float32), speechlike(1.0), np.zeros(16000, np.float32)])
    frames: list[OutputFrame] = []
    import asyncio

    asyncio.run(run_offline(x, models, frames.append))
    assert [f.index for f in frames] == list(range(75))
    idle = models.engine.idle_frame_at
    speaking = [f for f in frames if f.speech]
    silent = [f for f in frames if not f.speech]
    assert speaking and silent
    # silent frames are exactly the idle loop; speaking frames are rendered faces whose mouth
    # opens with loudness (closed at syllable troughs, where they may equal the idle frame)
    assert all(np.array_equal(f.image, idle(f.index)) for f in silent)
    moved = [not np.array_equal(f.image, idle(f.index)) for f in speaking]
    assert sum(moved) > len(speaking) / 2
    # the audio rides with its frame
    np.testing.assert_array_equal(np.concatenate([f.audio for f in frames]), x)
    assert all(len(f.audio) == SPF for f in frames)


def test_unwritable_output_leaves_nothing(models: PipelineModels, speech_wav: Path, tmp_path: Path) -> None:
    from anchor.errors import AnchorError

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises((AnchorError, OSError)):
        render_file_to_mp4(speech_wav, blocker / "out.mp4", models)
