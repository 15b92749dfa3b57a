"""Probing and timestamp-resampled decoding of video files."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from anchor.errors import FaceError
from anchor.face.video import probe_video, read_frames


def _write_counter_video(path: Path, fps: int, n: int, audio: bool = False) -> None:
    """Grey frames whose brightness is 8 * source frame index (decodable after H.264)."""
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        vs.options = {"crf": "1"}
        ast = out.add_stream("aac", rate=16000) if audio else None
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 8 * i, np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for p in vs.encode(frame):
                out.mux(p)
        for p in vs.encode(None):
            out.mux(p)
        if ast is not None:
            tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(16000 * n // fps) / 16000))
            af = av.AudioFrame.from_ndarray(tone.astype(np.float32)[None], format="fltp", layout="mono")
            af.sample_rate, af.pts = 16000, 0
            for p in ast.encode(af):
                out.mux(p)
            for p in ast.encode(None):
                out.mux(p)


def test_probe_reports_size_rate_and_audio(tmp_path: Path) -> None:
    silent, voiced = tmp_path / "silent.mp4", tmp_path / "voiced.mp4"
    _write_counter_video(silent, 30, 30)
    _write_counter_video(voiced, 25, 25, audio=True)
    info = probe_video(silent)
    assert (info.width, info.height, info.has_audio) == (64, 48, False)
    assert info.fps == pytest.approx(30)
    assert info.frames == 30
    assert info.duration == pytest.approx(1.0, abs=0.05)
    assert probe_video(voiced).has_audio


def test_read_frames_resamples_30_to_25_fps_by_timestamp(tmp_path: Path) -> None:
    path = tmp_path / "c.mp4"
    _write_counter_video(path, 30, 30)
    frames = list(read_frames(path, fps=25))
    assert len(frames) == 25  # one second at 25 fps
    assert frames[0].shape == (48, 64, 3) and frames[0].dtype == np.uint8
    source_index = [int(round(f.mean() / 8)) for f in frames]
    # output frame k shows time k/25: the nearest 30 fps frame is round(k * 30 / 25)
    expected = [min(29, int(np.floor(k * 30 / 25 + 0.5))) for k in range(25)]
    assert source_index == expected


def test_read_frames_keeps_25_fps_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "c.mp4"
    _write_counter_video(path, 25, 20)
    assert [int(round(f.mean() / 8)) for f in read_frames(path, fps=25)] == list(range(20))


def test_undecodable_and_missing_files_raise_one_line_face_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    for call in (probe_video, lambda p: list(read_frames(p))):
        with pytest.raises(FaceError) as err:
            call(junk)
        assert str(junk) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(FaceError, match="no such file"):
        probe_video(tmp_path / "absent.mp4")
