"""`anchor bench` from the base install: without matplotlib it still writes its JSON, and says
once, in one line, that PNG plots need the `bench` extra."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

from anchor.commands import bench
from anchor.config import AnchorConfig

pytestmark = pytest.mark.slow


def test_bench_writes_json_and_a_note_when_matplotlib_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # None in sys.modules makes `import matplotlib` raise ImportError, as on a base install
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["stages", "--tiny", "--out", str(tmp_path)])
    assert bench.run(args, AnchorConfig()) == 0
    result = json.loads((tmp_path / "stages.json").read_text())
    assert result["figures"]["plots"] == []
    assert "anchor[bench]" in result["figures"]["plots_skipped"]
    assert not list(tmp_path.glob("*.png"))
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "matplotlib" in notes[0]
