"""CPU renderer speed: the cpu-small preset (or any preset / shape) through onnxruntime at batch 1.

    python benchmarks/renderer_cpu.py --out benchmarks/results/renderer_cpu.json
    python benchmarks/renderer_cpu.py --out sweep.json --candidates 128/16/3/3,256/16/3/3

The generator has random weights (speed does not depend on them): it is exported to ONNX in a
temp dir, then timed through the project's OnnxRuntimeBackend (uint8 map in, uint8 face out, so
the figure includes the pre/post-processing a stream pays) and through the bare session.run.
Burn-in runs first, then `--runs` timed runs; p50/p90 in ms and fps = 1000 / p50. `--candidates`
(resolution/ngf/n_downsample/n_blocks) measures other shapes interleaved with the preset in
rounds, so a busy machine affects them alike; the CPU time per frame (all threads) is recorded
too, being nearly independent of other load. The JSON holds the resolved config, CPU model,
library versions, load averages and the figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from anchor.config import AnchorConfig, BackendConfig, RendererConfig, to_dict  # noqa: E402
from benchmarks.common import cpu_model  # noqa: E402


def versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "torch": torch.__version__,
    }


def parse_candidate(spec: str, base: RendererConfig) -> RendererConfig:
    try:
        r, ngf, nd, nb = (int(v) for v in spec.split("/"))
    except ValueError:
        raise SystemExit(f"--candidates: {spec!r} is not resolution/ngf/n_downsample/n_blocks") from None
    return dataclasses.replace(
        base, preset=f"{base.preset}@{spec}", resolution=r, ngf=ngf, n_downsample=nd, n_blocks=nb
    )


def stats(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    p50 = float(np.percentile(a, 50))
    return {
        "p50_ms": p50, "p90_ms": float(np.percentile(a, 90)), "mean_ms": float(a.mean()),
        "min_ms": float(a.min()), "fps": 1000.0 / p50, "runs": len(ms),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--preset", default="cpu-small")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    parser.add_argument("--burn-in", type=int, default=20)
    parser.add_argument("--runs", type=int, default=200, help="timed runs per shape (all rounds)")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds over the shapes")
    parser.add_argument("--candidates", default="", help="extra shapes R/ngf/down/blocks, comma-separated")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch

    from anchor.render.backends import OnnxRuntimeBackend, maps_to_input
    from anchor.render.export import export_generator
    from anchor.render.networks import build_generator, count_parameters
    from anchor.render.presets import renderer_preset

    torch.set_num_threads(args.threads)
    preset = renderer_preset(args.preset)
    shapes = [preset] + [parse_candidate(s.strip(), preset) for s in args.candidates.split(",") if s.strip()]
    bcfg = BackendConfig(name="onnxruntime", threads=args.threads, max_batch=1)
    rng = np.random.default_rng(args.seed)
    load_before = os.getloadavg()
    entries: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        runners = []
        for i, rcfg in enumerate(shapes):
            torch.manual_seed(args.seed)
            gen = build_generator(rcfg)
            onnx_path = export_generator(gen, rcfg, Path(tmp) / f"r{i}.onnx", verify=False)
            backend = OnnxRuntimeBackend(onnx_path, bcfg)
            session = backend._session  # the bare session, to separate pre/post-processing
            assert session is not None
            maps = rng.integers(0, 256, (1, rcfg.resolution, rcfg.resolution, 3), dtype=np.uint8)
            x = maps_to_input(maps)
            for _ in range(args.burn_in):
                backend.infer(maps)
            runners.append((rcfg, backend, session, maps, x, count_parameters(gen)))
        per_round = max(1, args.runs // max(1, args.rounds))
        timings: list[tuple[list[float], list[float], list[float]]] = [([], [], []) for _ in runners]
        for _ in range(max(1, args.rounds)):
            for (_rcfg, backend, session, maps, x, _), (infer_ms, run_ms, cpu_ms) in zip(runners, timings, strict=True):
                for _ in range(3):  # re-warm caches after the other shapes ran
                    backend.infer(maps)
                for _ in range(per_round):
                    c0 = time.process_time()
                    t0 = time.perf_counter()
                    backend.infer(maps)
                    t1 = time.perf_counter()
                    cpu_ms.append((time.process_time() - c0) * 1000)
                    session.run(["face"], {"map": x})
                    t2 = time.perf_counter()
                    infer_ms.append((t1 - t0) * 1000)
                    run_ms.append((t2 - t1) * 1000)
        for (rcfg, backend, _s, _m, _x, params), (infer_ms, run_ms, cpu_ms) in zip(runners, timings, strict=True):
            backend.close()
            entries.append({
                "shape": f"{rcfg.resolution}/{rcfg.ngf}/{rcfg.n_downsample}/{rcfg.n_blocks}",
                "renderer": to_dict(rcfg),
                "parameters": params,
                "backend_infer": stats(infer_ms),  # uint8 in/out, what a stream pays
                "session_run": stats(run_ms),  # float32 graph only
                # CPU time of all threads per backend.infer: what a frame costs the machine,
                # and nearly independent of other load (wall time is not)
                "process_cpu_ms_p50": float(np.percentile(cpu_ms, 50)),
            })
    load_after = os.getloadavg()
    cfg = dataclasses.replace(AnchorConfig(), renderer=preset, backend=bcfg)
    result = {
        "benchmark": "renderer_cpu",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": to_dict(cfg),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "load_avg_before": load_before,
                    "load_avg_after": load_after, "platform": platform.platform()},
        "versions": versions(),
        "settings": {"threads": args.threads, "batch": 1, "burn_in": args.burn_in,
                     "runs": per_round * max(1, args.rounds), "rounds": args.rounds},
        "preset": args.preset,
        "figures": entries[0],
        "candidates": entries[1:],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(out.suffix + ".tmp")
    tmp_out.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp_out, out)
    for e in entries:
        b, s = e["backend_infer"], e["session_run"]
        print(f"{e['shape']:>12}  {e['parameters'] / 1e6:5.2f} M params  infer p50 {b['p50_ms']:6.1f} ms "
              f"p90 {b['p90_ms']:6.1f} ms  {b['fps']:6.1f} fps  cpu {e['process_cpu_ms_p50']:5.1f} ms/frame  "
              f"(session.run p50 {s['p50_ms']:.1f} ms)")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
