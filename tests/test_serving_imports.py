"""Serving needs neither torch nor the build code: `anchor serve` imports none of them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PROBE = r"""
import asyncio, json, sys
from anchor.config import AnchorConfig
from anchor.pipeline.models import load_models
from anchor.pipeline.session import AnchorSession
from anchor.stream.app import AnchorServer
import anchor.commands.serve, anchor.stream.channels, anchor.stream.say

async def main():
    cfg = AnchorConfig()
    models = load_models(None, cfg, live=True)
    session = AnchorSession(models, cfg.server)
    server = AnchorServer(session, cfg.server, "t", tts=cfg.tts)
    await session.start()
    await asyncio.sleep(0.5)  # frames are rendered, composited and published
    frames = session.player.frames_out
    await session.aclose()
    return frames

frames = asyncio.run(main())
print(json.dumps({"frames": frames, "modules": sorted(sys.modules)}))
"""


def test_serving_imports_no_torch_and_no_build_code() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["frames"] > 0  # it really served
    banned = [m for m in result["modules"]
              if m == "torch" or m.startswith(("torch.", "anchor.build", "anchor.train",
                                               "anchor.render.networks", "anchor.render.losses"))]
    assert banned == []
