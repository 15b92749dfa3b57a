"""The viewers benchmark through an SFU: anchor publishes one RTP stream to Janus (its streaming
plugin) and N lightweight viewers watch through Janus, all on this machine.

Janus's ICE (libnice) gathers no loopback candidates, so the run happens in a private network
namespace (`unshare --net`, as root) with its loopback for RTP and signalling and a veth pair
that exists only inside it for Janus's candidates (as tests/stream/test_stream_sfu.py does).
`run_sfu` re-runs this module inside the namespace and reads its JSON back.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from anchor.config import AnchorConfig
from benchmarks.common import BenchOptions
from benchmarks.janus_clients import NETNS_SETUP, wait_for_janus
from benchmarks.viewers import REPO, ServerProcess, measure

PUBLISH = "rtp://127.0.0.1:5004"


def unavailable() -> str | None:
    """Why the SFU run cannot happen here, or None."""
    from anchor.stream.publish import janus_lib_dir

    if shutil.which("janus") is None or janus_lib_dir() is None:
        return "Janus is not installed (apt-get install janus; scripts/setup.sh does)"
    if shutil.which("unshare") is None or shutil.which("ip") is None or os.geteuid() != 0:
        return "needs root with unshare and ip for a private network namespace"
    return None


def run_sfu(cfg: AnchorConfig, opts: BenchOptions, counts: tuple[int, ...], seconds: float,
            audio: np.ndarray) -> Any:
    reason = unavailable()
    if reason is not None:
        return {"skipped": True, "reason": reason}
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "audio.npy", audio)
        spec = {"counts": list(counts), "seconds": seconds, "tmp": tmp,
                "avatar": str(opts.avatar) if opts.avatar else None}
        cmd = [sys.executable, "-m", "benchmarks.sfu_bench", json.dumps(spec)]
        proc = subprocess.run(
            ["unshare", "--net", "sh", "-c", f'{NETNS_SETUP} && exec "$@"', "sh", *cmd],
            cwd=REPO, capture_output=True, text=True, timeout=120 + len(counts) * (seconds + 60),
        )
        out = Path(tmp) / "sfu.json"
        if proc.returncode != 0 or not out.is_file():
            return {"skipped": True,
                    "reason": f"the SFU run failed: {(proc.stderr or proc.stdout)[-500:]}"}
        return json.loads(out.read_text())


def inside(spec: dict[str, Any]) -> None:
    """Inside the namespace: Janus, `anchor serve --publish`, then N Janus viewers per count."""
    from anchor.stream.publish import PublishTarget, write_janus_config

    tmp = Path(spec["tmp"])
    audio = np.load(tmp / "audio.npy")
    janus_cfg = write_janus_config(tmp / "janus", PublishTarget.parse(PUBLISH))
    with open(tmp / "janus.log", "wb") as log:
        janus = subprocess.Popen(janus_cfg.command(), stdout=log, stderr=subprocess.STDOUT)
    rows: list[dict[str, Any]] = []
    counts = spec["counts"]
    server = ServerProcess(Path(spec["avatar"]) if spec["avatar"] else None,
                           ["--set", f"broadcast.max_viewers={max(counts) + 10}"],
                           serve_args=["--publish", PUBLISH])
    try:
        asyncio.run(wait_for_janus(janus_cfg.http_url, janus, tmp / "janus.log"))
        server.wait_ready()
        time.sleep(2.0)  # Janus learns the stream (and its first keyframe)
        for n in counts:
            row = asyncio.run(measure(
                server, n, spec["seconds"], audio,
                ["benchmarks.janus_clients", janus_cfg.http_url, str(janus_cfg.mountpoint_id)],
                others={"janus": janus.pid},
            ))
            rows.append(row)
    finally:
        server.stop()
        janus.send_signal(signal.SIGTERM)
        try:
            janus.wait(10)
        except subprocess.TimeoutExpired:
            janus.kill()
    (tmp / "sfu.json").write_text(json.dumps(rows))


if __name__ == "__main__":
    inside(json.loads(sys.argv[1]))
