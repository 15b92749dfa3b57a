"""Each stage alone, through `run_stage`: items in, items out."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from pipeline_helpers import SPF, run_stage, speechlike

from anchor.mouth.visemes import SpeechCues, WordCue
from anchor.pipeline.analysis import SpeechAnalyzer
from anchor.pipeline.items import InputAudio, OutputFrame, SegmentEnd, SegmentStart, SpeechFrame
from anchor.pipeline.models import PipelineModels
from anchor.pipeline.stages import AnalysisStage, RenderStage


def test_analysis_turns_a_segment_into_one_frame_per_640_samples(models: PipelineModels) -> None:
    x = speechlike(1.0)[:15000]  # not a whole number of frames: the last one is padded
    cues = SpeechCues((), (WordCue("news", 0.5, 0.8),))
    pool = ThreadPoolExecutor(1)

    def make(inq, outq):  # type: ignore[no-untyped-def]
        a = SpeechAnalyzer(models.audio, models.streaming, models.mouth_model, models.infer)
        return AnalysisStage(a, pool, inq, outq)

    items = [SegmentStart("t", 0.0, live=False, cues=cues),
             *(InputAudio(x[i : i + 3200], 0.0) for i in range(0, len(x), 3200)), SegmentEnd("t")]
    out = asyncio.run(run_stage(make, items))
    pool.shutdown()
    frames = [o for o in out if isinstance(o, SpeechFrame)]
    assert isinstance(out[0], SegmentStart) and isinstance(out[-1], SegmentEnd)
    assert [f.index for f in frames] == list(range(-(-len(x) // SPF)))
    np.testing.assert_array_equal(np.concatenate([f.audio for f in frames])[: len(x)], x)
    assert [f.index for f in frames if f.words] == [12] and frames[12].words == ("news",)


def test_offline_render_keeps_order_and_audio(models: PipelineModels) -> None:
    pool = ThreadPoolExecutor(1)
    speech = [SpeechFrame(k, np.zeros(10, np.float32), k % 3 != 0,
                          np.full(SPF, k, np.float32)) for k in range(9)]

    def make(inq, outq):  # type: ignore[no-untyped-def]
        return RenderStage(models.engine, pool, inq, outq, fps=25, samples_per_frame=SPF,
                           max_batch=4)

    out = asyncio.run(run_stage(make, [SegmentStart("f", 0.0, live=False), *speech,
                                       SegmentEnd("f")]))
    pool.shutdown()
    assert all(isinstance(o, OutputFrame) for o in out)
    assert [o.index for o in out] == list(range(9))
    assert [int(o.audio[0]) for o in out] == list(range(9))  # each frame keeps its own audio
    assert [o.speech for o in out] == [f.speech for f in speech]
