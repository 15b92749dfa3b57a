"""What every benchmark result carries: resolved config, git sha, machine, library versions.

A suite returns a dict of figures; `write_result` wraps it with the provenance and writes
`<out>/<suite>.json` atomically. Plots go beside it as PNG.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
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
    """What `anchor bench` was asked for; every suite gets the same options.

    `quick` sizes a run for a 2-core CPU in minutes; `tiny` (tests only) shrinks it to seconds,
    so numbers from a tiny run only show that the suite works. Paths left None are resolved by
    the suite (default avatar bundle, ../shared/media) and recorded in its figures.
    """

    quick: bool
    out: Path
    avatar: Path | None = None
    tiny: bool = False
    dataset: Path | None = None  # lookahead: a dataset written by `anchor prepare`
    mouth_model: Path | None = None  # lookahead: a mouth checkpoint (.pt) or ONNX
    preset: str | None = None  # renderer: preset name (default cpu-small; paper-512 on GPU)
    backends: tuple[str, ...] = ()  # renderer: backends to try (empty = all)
    threads: int = 2  # onnxruntime / torch intra-op threads
    seed: int = 0


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


def git_dirty() -> bool | None:
    """True when the working tree differs from HEAD (results then come from uncommitted code)."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
            text=True, check=True, cwd=Path(__file__).resolve().parent,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return bool(out.strip())


def machine_slug() -> str:
    """A directory name for this machine's results: `cpu-2core`, `nvidia-h100-80gb-hbm3`..."""
    gpu = gpu_model()
    if gpu:
        return re.sub(r"[^a-z0-9]+", "-", gpu.lower()).strip("-")
    return f"cpu-{os.cpu_count() or 1}core"


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
        "git_dirty": git_dirty(),
        "machine": machine(),
        "libraries": library_versions(),
        "config": to_dict(cfg),
        "figures": figures,
    }
    path = opts.out / f"{suite}.json"
    fd, tmp = tempfile.mkstemp(dir=opts.out, suffix=".json.tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(result, fh, indent=2, default=_jsonable)
    os.chmod(tmp, 0o644)  # mkstemp makes it private; results are meant to be shared
    os.replace(tmp, path)
    return path


def skipped(reason: str, **extra: Any) -> dict[str, Any]:
    """The figures of a suite (or part of one) that could not run, with the reason recorded."""
    return {"skipped": True, "reason": reason, **extra}


def non_finite_paths(value: Any, path: str = "") -> list[str]:
    """JSON paths of every NaN/inf number inside a figures dict (empty when all are finite)."""
    bad: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            bad += non_finite_paths(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            bad += non_finite_paths(v, f"{path}[{i}]")
    elif isinstance(value, float | np.floating) and not math.isfinite(float(value)):
        bad.append(path)
    return bad


def save_figure(fig: Any, path: Path) -> Path:
    """Save a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no display on servers / CI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
