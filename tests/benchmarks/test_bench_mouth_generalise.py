"""`anchor bench mouth_generalise` on a tiny synthetic dataset: every part runs and is reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

from synthetic_mouth_data import with_lips, write_synthetic_dataset  # noqa: E402
from test_bench_smoke import _args, _strict_json  # noqa: E402

from anchor.commands import bench  # noqa: E402
from anchor.config import AnchorConfig  # noqa: E402


def test_leave_speaker_out_and_fine_tune_tables(tmp_path: Path) -> None:
    root = with_lips(write_synthetic_dataset(tmp_path / "ds", clips=4))
    # One clip plays a presenter, so the fine-tune comparison runs too.
    (root / "clips" / "clip3").rename(root / "clips" / "dfrf_presenter")
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["clips"][3]["name"] = "dfrf_presenter"
    (root / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "results"
    assert bench.run(_args("mouth_generalise", "--tiny", "--dataset", str(root), "--out", str(out)),
                     AnchorConfig()) == 0
    fig = _strict_json(out / "mouth_generalise.json")["figures"]
    speakers = {s["speaker"] for s in fig["base"]["speakers"]}
    assert speakers == {"clip0", "clip1", "clip2", "dfrf_presenter"}
    assert fig["base_live"]["streaming"]["right_context_frames"] == 2
    (row,) = fig["finetune"]
    assert row["presenter"] == "dfrf_presenter" and set(row) >= {"generic", "scratch", "finetuned"}
    assert row["test_s"] == pytest.approx(0.2 * 300 / 25, abs=0.05)
    text = (out / "mouth_generalise.txt").read_text()
    assert "mean over speakers" in text and "finetuned" in text
    assert (out.parent / "tmp" / "mouth_generalise").is_dir()  # checkpoints kept out of results
