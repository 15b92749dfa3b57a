"""Smoke test of `anchor bench`: every suite runs (--tiny) and writes well-formed results.

The numbers of a tiny run mean nothing; what is checked is what a user relies on: one JSON per
suite with the provenance (config, git sha, machine, library versions) and finite figures, the
suite's main figures present (or a recorded reason why the suite was skipped), and its plots.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import pytest

from anchor.commands import bench
from anchor.config import AnchorConfig
from anchor.errors import AnchorError

pytestmark = pytest.mark.slow

PROVENANCE = ("suite", "quick", "created", "git_sha", "machine", "libraries", "config", "figures")


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return parser.parse_args(list(argv))


def _strict_json(path: Path) -> dict[str, Any]:
    def reject(token: str) -> Any:
        raise ValueError(f"{path}: non-finite number {token} in JSON")

    data = json.loads(path.read_text(), parse_constant=reject)
    assert isinstance(data, dict)
    return data


def _numbers(value: Any) -> list[float]:
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [float(value)]
    return []


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    code = bench.run(_args("all", "--tiny", "--out", str(out)), AnchorConfig())
    assert code == 0, "some suite failed (see the log)"
    return out


def test_bench_is_an_anchor_command() -> None:
    from anchor.cli import COMMANDS

    assert ("bench", None, "anchor.commands.bench") in [c[:3] for c in COMMANDS]
    assert _args("renderer", "--quick").suite == "renderer"


def test_missing_avatar_is_a_one_line_error(tmp_path: Path) -> None:
    args = _args("e2e", "--tiny", "--out", str(tmp_path), "--avatar", str(tmp_path / "nope"))
    with pytest.raises(AnchorError, match="nope"):
        bench.run(args, AnchorConfig())


@pytest.mark.parametrize("suite", bench.SUITES)
def test_suite_writes_well_formed_json(results: Path, suite: str) -> None:
    data = _strict_json(results / f"{suite}.json")
    for key in PROVENANCE:
        assert key in data, f"{suite}.json lacks {key}"
    assert data["suite"] == suite
    assert data["machine"]["cpu"]
    assert data["config"]["streaming"]["right_context_frames"] == 10
    figures = data["figures"]
    assert all(math.isfinite(n) for n in _numbers(figures))
    if figures.get("skipped"):
        assert figures["reason"], f"{suite} skipped without a reason"
        return
    for name in figures.get("plots", []):
        png = results / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert figures.get("plots"), f"{suite} wrote no plot"


def test_suite_figures(results: Path) -> None:
    renderer = _strict_json(results / "renderer.json")["figures"]
    ort = renderer["backends"]["onnxruntime"]
    assert not ort["skipped"] and ort["batches"]["1"]["fps"] > 0
    assert renderer["backends"]["tensorrt"]["skipped"] or "batches" in renderer["backends"]["tensorrt"]

    stages = _strict_json(results / "stages.json")["figures"]
    for stage in ("decode", "resample", "vad", "mfcc", "tcn_step", "facial_map", "renderer",
                  "compositor", "video_encode"):
        assert stages["functions"]["stages_ms"][stage]["n"] > 0, stage
    assert stages["pipeline"]["frames_out"] > 0

    e2e = _strict_json(results / "e2e.json")["figures"]
    assert set(e2e["split_ms"]) >= {"lookahead", "queueing", "compute", "encode"}
    assert e2e["browser"]["skipped"] or "latency_ms" in e2e["browser"]

    viewers = _strict_json(results / "viewers.json")["figures"]
    assert [r["viewers"] for r in viewers["direct"]] == [1, 2]
    assert all(r["connected"] == r["viewers"] and r["viewer_fps_min"] > 0 for r in viewers["direct"])
    sfu = viewers["sfu"]  # a list of rows where Janus runs, else why not
    assert (isinstance(sfu, list) and [r["viewers"] for r in sfu] == [1, 2]) or sfu["reason"]

    conc = _strict_json(results / "concurrency.json")["figures"]
    assert conc["by_sessions"] and conc["by_sessions"][0]["sessions"] == 1

    look = _strict_json(results / "lookahead.json")["figures"]
    if not look.get("skipped"):
        lookaheads = {row["lookahead_ms"] for row in look["table"]}
        assert {400.0, 200.0, 120.0, 80.0} <= lookaheads
        assert look["recommendation"]["lookahead_ms"] in lookaheads
