"""What every benchmark result carries: resolved config, git sha, machine, library versions.

A suite returns a dict of figures; `write_result` wraps it with the provenance and writes
`<out>/<suite>.json` atomically. Plots go beside it as PNG.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from anchor.config import AnchorConfig, to_dict

LIBRARIES = ("anchor", "numpy", "onnxruntime", "torch", "av", "aiortc", "opencv-python-headless",
             "tensorrt")


@dataclass(frozen=True)
class BenchOptions:
    quick: bool
    out: Path
    avatar: Path | None = None


def git_sha() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def gpu_model() -> str | None:
    try:
        import torch

        if torch.cuda.is_available():
            return str(torch.cuda.get_device_name(0))
    except ImportError:
        pass
    return None


def library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpu": gpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def percentiles(values: list[float] | np.ndarray) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return {"n": 0}
    return {
        "n": int(arr.size),
        "mean": float(arr.mean()),
        "p50": float(np.percentile(arr, 50)),
        "p95": float(np.percentile(arr, 95)),
        "p99": float(np.percentile(arr, 99)),
        "max": float(arr.max()),
    }


def write_result(suite: str, figures: dict[str, Any], cfg: AnchorConfig, opts: BenchOptions) -> Path:
    opts.out.mkdir(parents=True, exist_ok=True)
    result = {
        "suite": suite,
        "quick": opts.quick,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git_sha": git_sha(),
        "machine": machine(),
        "libraries": library_versions(),
        "config": to_dict(cfg),
        "figures": figures,
    }
    path = opts.out / f"{suite}.json"
    fd, tmp = tempfile.mkstemp(dir=opts.out, suffix=".json.tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(result, fh, indent=2, default=_jsonable)
    os.replace(tmp, path)
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
