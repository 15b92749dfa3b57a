"""The streaming pipeline: asyncio stages joined by bounded queues sized in milliseconds.

    audio in -> resample 16 kHz -> VAD + MFCC + sliding TCN (AnalysisStage)
             -> facial map + renderer | compositor (RenderStage) -> paced Player -> viewers

`AnchorSession` (session.py) runs it live for the server; `render_file_to_mp4` (offline.py) runs
the same stage classes unpaced for `anchor render`. Observers (observers.py) record per-stage
timestamps keyed by frame index.
"""
