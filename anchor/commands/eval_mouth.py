"""`anchor eval mouth DATASET [--runs runs/mouth] [--plot fig5.png] [--json results.json]`."""

from __future__ import annotations

import argparse

from anchor.config import AnchorConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="dataset directory written by `anchor prepare`")
    parser.add_argument("--runs", default="runs/mouth", help="runs directory (RUNS/<kind>/checkpoint.pt)")
    parser.add_argument("--plot", default=None, help="write Fig. 5 (MSE per window position) as PNG")
    parser.add_argument("--json", default=None, help="write the results as JSON")


def run(args: argparse.Namespace, cfg: AnchorConfig) -> int:
    from anchor.mouth.evaluate import (
        evaluate_runs,
        format_table,
        plot_position_mse,
        results_json,
        write_json,
    )

    st = cfg.streaming
    st.validate()
    results = evaluate_runs(args.dataset, args.runs, cfg)
    print(f"held-out split of {args.dataset}; windows hop {st.hop_frames} frames, "
          f"right context {st.right_context_frames} frames -> lookahead {st.lookahead_ms:.0f} ms")
    print(format_table(results))
    if args.plot:
        print(f"Fig. 5 -> {plot_position_mse(results, cfg, args.plot)}")
    if args.json:
        print(f"results -> {write_json(results_json(results, cfg, args.dataset), args.json)}")
    return 0
