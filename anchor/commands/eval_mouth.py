"""`anchor eval mouth DATASET [--runs runs/mouth] [--plot fig5.png] [--json results.json]`
`anchor eval mouth DATASET --leave-speaker-out [--folds 3] [--runs runs/lso] [--json F]`."""

from __future__ import annotations

import argparse

from anchor.config import AnchorConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="dataset directory written by `anchor prepare`")
    parser.add_argument("--runs", default="runs/mouth", help="runs directory (RUNS/<kind>/checkpoint.pt)")
    parser.add_argument("--plot", default=None, help="write Fig. 5 (MSE per window position) as PNG")
    parser.add_argument("--json", default=None, help="write the results as JSON")
    parser.add_argument(
        "--leave-speaker-out", action="store_true",
        help="train one model per fold of whole speakers (RUNS/fold<k>/, reused when present) "
        "and score every speaker on the fold that never heard them: inner-lip gap correlation, "
        "best lag, against the audio-energy baseline",
    )
    parser.add_argument("--folds", type=int, default=3, help="speaker folds (--leave-speaker-out)")


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
    if args.leave_speaker_out:
        return _leave_speaker_out(args, cfg)
    results = evaluate_runs(args.dataset, args.runs, cfg)
    print(f"held-out split of {args.dataset}; windows hop {st.hop_frames} frames, "
          f"right context {st.right_context_frames} frames -> lookahead {st.lookahead_ms:.0f} ms")
    print(format_table(results))
    if args.plot:
        print(f"Fig. 5 -> {plot_position_mse(results, cfg, args.plot)}")
    if args.json:
        print(f"results -> {write_json(results_json(results, cfg, args.dataset), args.json)}")
    return 0


def _leave_speaker_out(args: argparse.Namespace, cfg: AnchorConfig) -> int:
    from anchor.train.dataset import load_dataset
    from anchor.train.generalise import format_scores, leave_speaker_out, results_json, write_json
    from anchor.train.mouth import resolve_config

    cfg = resolve_config(cfg)
    result = leave_speaker_out(load_dataset(args.dataset), args.runs, cfg, folds=args.folds)
    print(f"leave-speaker-out, {args.folds} folds of whole speakers, {args.dataset}; "
          f"lookahead {cfg.streaming.lookahead_ms:.0f} ms")
    print(format_scores(result))
    if args.json:
        print(f"results -> {write_json(results_json(result, cfg, args.dataset), args.json)}")
    return 0
