"""`anchor bench SUITE [--quick] [--out DIR] [--avatar BUNDLE]`: run benchmark suites.

Each suite is `benchmarks/<suite>.py` exposing `run(cfg, opts) -> dict` (the figures), and
optionally `plot(figures, out_dir) -> list[Path]` and `summary(figures) -> str`. The figures go
to `<out>/<suite>.json` with the resolved config, git sha, machine and library versions; plots go
beside it as PNG.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import sys
import time
from pathlib import Path
from types import ModuleType

from anchor.config import AnchorConfig
from anchor.errors import BenchError

log = logging.getLogger(__name__)

SUITES = ("stages", "e2e", "lookahead", "renderer", "concurrency", "viewers", "tts", "phonemes",
          "head_motion", "channels", "mouth_generalise")
REPO_ROOT = Path(__file__).resolve().parents[2]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suite", choices=(*SUITES, "all"), help="which benchmark to run")
    parser.add_argument("--quick", action="store_true",
                        help="a short run (a few minutes for all suites on a 2-core CPU)")
    parser.add_argument("--tiny", action="store_true",
                        help="the smallest run that exercises every code path (tests; numbers "
                             "are not meaningful)")
    parser.add_argument("--out", default=None,
                        help="results directory (default benchmarks/results/<machine>)")
    parser.add_argument("--avatar", default=None,
                        help="avatar bundle (default: the committed default avatar)")
    parser.add_argument("--dataset", default=None,
                        help="lookahead: dataset from `anchor prepare` (default: a small one "
                             "prepared from ../shared/media clips)")
    parser.add_argument("--mouth-model", default=None,
                        help="lookahead: mouth checkpoint (.pt) or ONNX (default: the avatar's)")
    parser.add_argument("--preset", default=None,
                        help="renderer: renderer preset (default cpu-small; paper-512 for GPUs)")
    parser.add_argument("--backend", dest="backends", action="append", default=[],
                        help="renderer: backend to measure (repeatable; default all)")


def _suite_module(name: str) -> ModuleType:
    # benchmarks/ lives in the repository next to the package, not inside it.
    if str(REPO_ROOT) not in sys.path and (REPO_ROOT / "benchmarks" / "__init__.py").is_file():
        sys.path.insert(0, str(REPO_ROOT))
    try:
        return importlib.import_module(f"benchmarks.{name}")
    except ModuleNotFoundError as exc:
        if exc.name in ("benchmarks", f"benchmarks.{name}"):
            raise BenchError(
                f"benchmarks/{name}.py not found (run `anchor bench` from a source checkout)"
            ) from exc
        raise


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


PLOTS_NEED = (
    "PNG plots need matplotlib: pip install 'anchor[bench]' (the JSON results are written anyway)"
)


def plotting_available() -> bool:
    """Plots are optional: `anchor bench` works from the base install and writes JSON."""
    try:
        return importlib.util.find_spec("matplotlib") is not None
    except ValueError:  # a module set to None in sys.modules (how tests hide it)
        return False


def run(args: argparse.Namespace, cfg: AnchorConfig) -> int:
    _suite_module("common")
    from benchmarks.common import (
        BenchOptions,
        machine,
        machine_slug,
        non_finite_paths,
        write_result,
    )

    out = Path(args.out) if args.out else REPO_ROOT / "benchmarks" / "results" / machine_slug()
    opts = BenchOptions(
        quick=bool(args.quick or args.tiny), out=out,
        avatar=Path(args.avatar) if args.avatar else None, tiny=bool(args.tiny),
        dataset=Path(args.dataset) if args.dataset else None,
        mouth_model=Path(args.mouth_model) if args.mouth_model else None,
        preset=args.preset, backends=tuple(args.backends), threads=max(1, cfg.backend.threads),
    )
    suites = SUITES if args.suite == "all" else (args.suite,)
    mode = "tiny" if opts.tiny else "quick" if opts.quick else "full"
    failed: list[str] = []
    noted = False  # the missing-matplotlib note is printed once
    for name in suites:
        mod = _suite_module(name)
        print(f"== bench {name} ({mode})", flush=True)
        t0 = time.monotonic()
        load_before = _load_average()
        try:
            figures = mod.run(cfg, opts)
            if hasattr(mod, "plot") and not figures.get("skipped"):
                if plotting_available():
                    plots = mod.plot(figures, opts.out)
                    figures["plots"] = [p.name for p in plots]
                else:
                    figures["plots"] = []
                    figures["plots_skipped"] = PLOTS_NEED
                    if not noted:
                        print(f"note: {PLOTS_NEED}", flush=True)
                        noted = True
        except Exception:
            if len(suites) == 1:
                raise
            log.exception("suite %s failed", name)  # `all` goes on with the other suites
            failed.append(name)
            continue
        figures["wall_seconds"] = round(time.monotonic() - t0, 2)
        # other work on the machine skews every timing: keep how busy it was
        figures["load_average"] = {"before": load_before, "after": _load_average()}
        bad = non_finite_paths(figures)
        if bad:
            log.warning("suite %s: non-finite figures at %s", name, ", ".join(bad[:10]))
        path = write_result(name, figures, cfg, opts)
        if figures.get("skipped"):
            text = f"{name} skipped: {figures.get('reason')}"
        else:
            text = mod.summary(figures) if hasattr(mod, "summary") else ""
        if text:
            print(text)
            # the same table beside the JSON, for reading results without tools
            m = machine()
            head = (f"# anchor bench {name} ({mode}) on {m['cpu']}, {m['cpu_count']} cores, "
                    f"GPU {m['gpu'] or 'none'}; load average {figures['load_average']}\n")
            _write_text(path.with_suffix(".txt"), head + text + "\n")
        print(f"-> {path} ({figures['wall_seconds']:.0f} s)", flush=True)
    if failed:
        print(f"anchor: bench: failed suites: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
