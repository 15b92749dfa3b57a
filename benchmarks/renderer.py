"""Renderer backends side by side: torch eager fp32, torch-cuda fp16, onnxruntime, TensorRT fp16.

Backends are the project's own (anchor.render.backends.create_backend), started with no fallback.

One run, the same facial maps for every backend, batch 1/2/4/8/16: frames per second, latency
per batch (p50/p95) and peak memory. On the CPU peak memory is the resident-set high-water mark
(/proc/self/status VmHWM, reset through /proc/self/clear_refs before each measurement) minus the
resident set before the backend was created; on a GPU it is torch.cuda.max_memory_allocated
(torch backends) or the device's used-memory growth (others). The generator has random weights:
speed does not depend on them. Backends that cannot run here are recorded as skipped with why.

Supersedes benchmarks/renderer_cpu.py (onnxruntime only).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from anchor.config import AnchorConfig, BackendConfig, RendererConfig, replace_checked
from benchmarks.common import BenchOptions, percentiles, pyplot, save_figure, skipped
from benchmarks.inputs import cache_dir, config_key, random_renderer_files

log = logging.getLogger(__name__)

BACKENDS = ("torch", "torch-cuda", "onnxruntime", "tensorrt")  # names as in BackendConfig


# --------------------------------------------------------------------------------------------
# memory


def _status_kb(field: str) -> int:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return 0
    m = re.search(rf"^{field}:\s+(\d+)\s+kB", text, re.M)
    return int(m.group(1)) if m else 0


def reset_peak_rss() -> bool:
    """Reset the kernel's resident-set high-water mark (Linux >= 4.0); False if unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def rss_mb() -> float:
    return _status_kb("VmRSS") / 1024.0


def peak_rss_mb() -> float:
    return _status_kb("VmHWM") / 1024.0


# --------------------------------------------------------------------------------------------
# inputs


def benchmark_maps(resolution: int, n: int, seed: int = 0) -> np.ndarray:
    """(n, R, R, 3) uint8 facial maps as the pipeline draws them (synthetic template face,
    random mouth features), so every backend sees the same realistic input."""
    import cv2

    from anchor.build.synth import synthetic_landmarks
    from anchor.face.facial_map import FacialMapBuilder, TemplateFrame
    from anchor.mouth.features import MouthPca, normalise_mouth

    rng = np.random.default_rng(seed)
    size = 256
    lm = synthetic_landmarks(size)
    norm = normalise_mouth(lm[None])
    edges = np.zeros((size, size), np.uint8)
    cv2.polylines(edges, [np.round(lm[0:17]).astype(np.int32)], False, 255, 1)
    cv2.polylines(edges, [np.round(lm[27:36]).astype(np.int32)], False, 255, 1)
    template = TemplateFrame(edges=edges, crop_landmarks=lm, mouth_center=norm.center[0],
                             mouth_angle=float(norm.angle[0]), mouth_scale=float(norm.scale[0]),
                             mouth_mean=norm.mouth[0].astype(np.float64))
    comps = np.linalg.qr(rng.standard_normal((40, 10)))[0].T.astype(np.float32)
    pca = MouthPca(mean=np.zeros(40, np.float32), components=comps,
                   explained_variance_ratio=np.full(10, 0.1, np.float32))
    builder = FacialMapBuilder(resolution, pca)
    feats = rng.normal(0, 0.05, (n, 10)).astype(np.float32)
    return np.stack([builder.build(template, f) for f in feats])


# --------------------------------------------------------------------------------------------
# backends


@dataclass
class _Backend:
    name: str  # the label in the results (backend name, plus the thread count if not default)
    infer: Callable[[np.ndarray], np.ndarray]
    close: Callable[[], None]
    precision: str
    threads: int | None = None  # CPU intra-op threads
    prepare: Callable[[], None] | None = None  # untimed, before each timed call

    @property
    def kind(self) -> str:
        return self.name.split(" ")[0]


CPU_BACKENDS = ("torch", "onnxruntime")
GPU_BACKENDS = ("torch-cuda", "tensorrt")
PRECISION = {"torch": "fp32", "torch-cuda": "fp16", "onnxruntime": "fp32", "tensorrt": "fp16"}


def cuda_unavailable() -> str | None:
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    return None if torch.cuda.is_available() else "no CUDA device (torch.cuda.is_available() is False)"


def tensorrt_unavailable() -> str | None:
    """Why TensorRT cannot run here, or None when it can."""
    try:
        import tensorrt  # noqa: F401
    except ImportError as exc:
        return f"tensorrt is not installed ({exc.__class__.__name__}: {exc})"
    return cuda_unavailable()


def make_backend(name: str, onnx_path: Path, ckpt: Path | None, threads: int,
                 max_batch: int, label: str | None = None) -> _Backend | str:
    """The project's backend, started and warmed up, or why it cannot run here."""
    from anchor.render.backends import create_backend

    reason = {"torch-cuda": cuda_unavailable, "tensorrt": tensorrt_unavailable}.get(
        name, lambda: None)()
    if reason:
        return reason
    # fallback = itself: a backend that cannot start must be reported, not replaced
    bcfg = replace_checked(BackendConfig(threads=threads, max_batch=max_batch,
                                         engines_dir=str(cache_dir() / "engines")),
                           name=name, fallback=name)
    try:
        backend = create_backend(bcfg, onnx_path, ckpt)
    except Exception as exc:  # noqa: BLE001 - any failure to start is a recorded skip
        return f"cannot start: {exc}"
    cpu = name in CPU_BACKENDS
    prepare = None
    if name == "torch":
        import torch

        # torch's thread count is process-wide: set it before each call of this variant
        def prepare() -> None:
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)

    return _Backend(label or name, backend.infer, backend.close, PRECISION.get(name, "?"),
                    threads if cpu else None, prepare)


# --------------------------------------------------------------------------------------------
# measurement


def _sync(name: str) -> None:
    if name in GPU_BACKENDS:
        import torch

        torch.cuda.synchronize()


def _gpu_peak(name: str, reset: bool) -> float | None:
    if name not in GPU_BACKENDS:  # and do not import torch into a CPU backend's figures
        return None
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    if reset:
        torch.cuda.reset_peak_memory_stats()
        return None
    if name.startswith("torch"):
        return float(torch.cuda.max_memory_allocated()) / 2**20
    free, total = torch.cuda.mem_get_info()
    return float(total - free) / 2**20


def memory_profile(name: str, onnx_path: Path, ckpt: Path | None, threads: int,
                   maps: np.ndarray, batches: tuple[int, ...]) -> dict[str, dict[str, float]]:
    """Run in a fresh process: peak memory to serve each batch size.

    RSS: VmHWM after the first call at batch b (batches ascending, so the high-water mark is
    that batch's) minus VmRSS before the backend was created. GPU: max_memory_allocated (torch
    backends) or device memory in use (others).
    """
    base = rss_mb()
    reset_peak_rss()
    backend = make_backend(name, onnx_path, ckpt, threads, max(batches))
    if isinstance(backend, str):
        return {}
    out: dict[str, dict[str, float]] = {}
    try:
        for b in sorted(batches):
            x = np.ascontiguousarray(np.resize(maps, (b, *maps.shape[1:])))
            _gpu_peak(backend.kind, reset=True)
            if backend.prepare:
                backend.prepare()
            backend.infer(x)
            _sync(backend.kind)
            entry = {"peak_rss_delta_mb": max(0.0, peak_rss_mb() - base)}
            gpu = _gpu_peak(backend.kind, reset=False)
            if gpu is not None:
                entry["gpu_peak_mb"] = gpu
            out[str(b)] = entry
    finally:
        backend.close()
    return out


def _memory_child() -> None:
    """Entry point of the memory-profile subprocess: JSON request on stdin, JSON on stdout."""
    import json
    import sys

    req = json.loads(sys.stdin.read())
    logging.basicConfig(level=logging.WARNING)
    maps = np.load(req["maps"])
    out = memory_profile(req["name"], Path(req["onnx"]), Path(req["ckpt"]) if req["ckpt"] else None,
                         int(req["threads"]), maps, tuple(req["batches"]))
    sys.stdout.write("\n" + json.dumps(out) + "\n")


def memory_profiles(variants: list[tuple[str, str, int]], onnx_path: Path, ckpt: Path | None,
                    maps: np.ndarray, batches: tuple[int, ...]) -> dict[str, Any]:
    """memory_profile of every variant, each in a fresh Python process (one at a time)."""
    import json
    import subprocess
    import sys
    import tempfile

    from benchmarks.inputs import REPO_ROOT

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        maps_path = Path(tmp) / "maps.npy"
        np.save(maps_path, maps)
        code = (f"import sys; sys.path.insert(0, {str(REPO_ROOT)!r}); "
                "from benchmarks.renderer import _memory_child; _memory_child()")
        for label, name, threads in variants:
            req = {"name": name, "onnx": str(onnx_path), "ckpt": str(ckpt) if ckpt else None,
                   "threads": threads, "maps": str(maps_path), "batches": list(batches)}
            proc = subprocess.run([sys.executable, "-c", code], input=json.dumps(req),
                                  capture_output=True, text=True, check=False)
            try:
                out[label] = json.loads(proc.stdout.strip().splitlines()[-1])
            except (IndexError, json.JSONDecodeError):
                log.warning("renderer: memory profile of %s failed (exit %d: %s)", label,
                            proc.returncode, proc.stderr.strip().splitlines()[-1:] or "")
                out[label] = {}
    return out


def measure(backends: list[_Backend], maps: np.ndarray, batches: tuple[int, ...], min_reps: int,
            min_seconds: float, warmup: int) -> dict[str, dict[str, Any]]:
    """Per backend, per batch: latency percentiles and fps. Several backends take turns call by
    call (rounds); the suite passes one at a time (see run)."""
    results: dict[str, dict[str, Any]] = {b.name: {} for b in backends}
    for batch in batches:
        x = np.ascontiguousarray(np.resize(maps, (batch, *maps.shape[1:])))
        for backend in backends:
            if backend.prepare:
                backend.prepare()
            for _ in range(warmup):
                backend.infer(x)
        times: dict[str, list[float]] = {b.name: [] for b in backends}
        t_end = time.perf_counter() + min_seconds * len(backends)
        while min(len(t) for t in times.values()) < min_reps or time.perf_counter() < t_end:
            for backend in backends:
                if backend.prepare:
                    backend.prepare()
                t0 = time.perf_counter()
                out = backend.infer(x)
                _sync(backend.kind)
                times[backend.name].append(time.perf_counter() - t0)
                if out.shape != x.shape or out.dtype != np.uint8:
                    raise RuntimeError(
                        f"{backend.name}: infer returned {out.shape} {out.dtype} for {x.shape}"
                    )
        for backend in backends:
            lat = percentiles([1000 * t for t in times[backend.name]])
            results[backend.name][str(batch)] = {
                "batch": batch,
                "latency_ms": lat,
                "ms_per_frame": lat["p50"] / batch,
                "fps": 1000.0 * batch / lat["p50"],
            }
    return results


def run(cfg: AnchorConfig, opts: BenchOptions) -> dict[str, Any]:
    from anchor.render.presets import renderer_preset
    from benchmarks.common import gpu_model

    try:
        import torch  # noqa: F401
    except ImportError:
        return skipped("torch is not installed: the random-weight generator cannot be built "
                       "(install the train extra)")
    gpu = gpu_model()
    preset = opts.preset or ("paper-512" if gpu else "cpu-small")
    rcfg = renderer_preset(preset)
    if opts.tiny:  # exercise every path in seconds; the numbers mean nothing
        rcfg = dataclasses.replace(rcfg, preset=f"{preset}-tiny", resolution=64, ngf=8,
                                   n_downsample=2, n_blocks=1)
    batches: tuple[int, ...]
    if opts.tiny:
        batches, min_reps, min_seconds, warmup = (1, 2), 2, 0.0, 1
    elif opts.quick:
        batches, min_reps, min_seconds, warmup = (1, 2, 4, 8, 16), 3, 1.0, 1
    else:
        batches, min_reps, min_seconds, warmup = (1, 2, 4, 8, 16), 10, 5.0, 3
    if preset == "paper-512" and not gpu:
        batches = (1,) if opts.tiny else (1, 2)  # ~2 s per frame on a CPU
    run_cfg = dataclasses.replace(cfg, renderer=rcfg)
    workdir = cache_dir() / f"renderer-{rcfg.preset}-{config_key(dataclasses.asdict(rcfg))}"
    onnx_path, ckpt = random_renderer_files(run_cfg, workdir, seed=opts.seed)
    maps = benchmark_maps(rcfg.resolution, max(batches), seed=opts.seed)
    names = opts.backends or BACKENDS
    entries: dict[str, Any] = {}
    live: list[_Backend] = []
    variants: list[tuple[str, str, int]] = []  # (label, backend, threads)
    peak_supported = reset_peak_rss()
    try:
        for name in names:
            variants.append((name, name, opts.threads))
            if name in CPU_BACKENDS and opts.threads > 1:
                # on a busy machine one thread can beat several (spinning thread pools)
                variants.append((f"{name} (1 thread)", name, 1))
        for label, name, threads in variants:
            log.info("renderer %s: starting backend %s", rcfg.preset, label)
            rss0 = rss_mb()
            reset_peak_rss()
            t0 = time.perf_counter()
            backend = make_backend(name, onnx_path, ckpt, threads, max(batches), label)
            if isinstance(backend, str):
                entries[label] = skipped(backend)
                continue
            entries[label] = {
                "skipped": False,
                "backend": name,
                "precision": backend.precision,
                "threads": backend.threads,
                "load_seconds": time.perf_counter() - t0,
                "load_peak_rss_delta_mb": max(0.0, peak_rss_mb() - rss0),
            }
            live.append(backend)
        log.info("renderer %s: timing %s at batches %s", rcfg.preset, [b.name for b in live],
                 batches)
        # one backend at a time: interleaved, one backend's spinning thread pool slows the other
        # (torch's is also process-wide, and switching its size per call is costly)
        measured: dict[str, dict[str, Any]] = {}
        for group in ([b] for b in live):
            measured.update(measure(group, maps, batches, min_reps, min_seconds, warmup))
    finally:
        for backend in live:
            backend.close()
    memory = memory_profiles([v for v in variants if v[0] in measured], onnx_path, ckpt, maps,
                             batches)
    for name, per_batch in measured.items():
        for b, entry in per_batch.items():
            entry.update(memory.get(name, {}).get(b, {}))
        best = max(per_batch.values(), key=lambda e: e["fps"])
        entries[name].update({
            "batches": per_batch,
            "best": {"batch": best["batch"], "fps": best["fps"]},
            "batch1_fps": per_batch["1"]["fps"],
        })
    import onnxruntime

    return {
        "preset": rcfg.preset,
        "renderer": dataclasses.asdict(rcfg),
        "parameters": _count_params(rcfg),
        "weights": "random (speed does not depend on them)",
        "batches": list(batches),
        "threads": opts.threads,
        "onnxruntime_providers": onnxruntime.get_available_providers(),
        "peak_rss_supported": peak_supported,
        "memory_note": ("peak_rss_delta_mb: in a fresh process per backend, VmHWM after the first "
                        "call at that batch (ascending) minus VmRSS before the backend was created, "
                        "so it includes importing the backend's library (torch ~200 MB); "
                        "gpu_peak_mb: torch.cuda.max_memory_allocated or device memory in use"),
        "gpu": gpu,
        "backends": entries,
    }


def _count_params(rcfg: RendererConfig) -> int:
    from anchor.render.networks import build_generator, count_parameters

    return int(count_parameters(build_generator(rcfg)))


# --------------------------------------------------------------------------------------------
# output


def plot(figures: dict[str, Any], out_dir: Path) -> list[Path]:
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for name, res in figures["backends"].items():
        if res.get("skipped"):
            continue
        bs = [int(b) for b in res["batches"]]
        ls = ":" if "(1 thread)" in name else "-"
        ax1.plot(bs, [res["batches"][str(b)]["fps"] for b in bs], marker="o", ls=ls, label=name)
        ax2.plot(bs, [res["batches"][str(b)]["latency_ms"]["p50"] for b in bs], marker="o", ls=ls,
                 label=name)
    ax1.axhline(25, color="0.6", ls="--", label="25 fps")
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch")
        ax.legend()
    ax1.set_ylabel("frames per second")
    ax2.set_yscale("log")
    ax2.set_ylabel("latency per batch, p50 (ms)")
    fig.suptitle(f"renderer {figures['preset']} ({figures['parameters'] / 1e6:.1f} M params)")
    fig.tight_layout()
    return [save_figure(fig, out_dir / "renderer.png")]


def summary(figures: dict[str, Any]) -> str:
    lines = [f"renderer preset {figures['preset']}, threads {figures['threads']}",
             f"{'backend':<22} {'batch':>5} {'fps':>8} {'p50 ms':>8} {'p95 ms':>8} {'peak MB':>8}"]
    for name, res in figures["backends"].items():
        if res.get("skipped"):
            lines.append(f"{name:<22} skipped: {res['reason']}")
            continue
        for b, e in res["batches"].items():
            mem = e.get("gpu_peak_mb", e.get("peak_rss_delta_mb", float("nan")))
            lines.append(f"{name:<22} {b:>5} {e['fps']:>8.1f} {e['latency_ms']['p50']:>8.1f} "
                         f"{e['latency_ms']['p95']:>8.1f} {mem:>8.1f}")
    return "\n".join(lines)
