#!/usr/bin/env python
"""Predict a CSV with every fold model of a run, averaging fold probabilities.

    python bin/predict.py RUN_DIR INPUT.csv -o predictions.csv [--weighted]
    python bin/predict.py --ensemble ENSEMBLE.json INPUT.csv -o predictions.csv   (fold models of several runs)
    accelerate launch bin/predict.py RUN_DIR INPUT.csv -o predictions.csv     (rows split across processes)

RUN_DIR is a run folder (its <model>_fold_<k>/ folders) or a folder of promoted model folders. Text,
text-pair and id columns default to the run's config (run.json), else "text".
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="predict.py", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "run_dir",
        type=Path,
        nargs="?",
        help="run folder, or a folder of promoted model folders (not with --ensemble)",
    )
    parser.add_argument("input", type=Path, nargs="?", help="CSV (or .parquet) to predict")
    parser.add_argument("-o", "--output", type=Path, default=Path("predictions.csv"), help="predictions CSV")
    parser.add_argument("--text-column", help="text column (default: the run's data.text_column)")
    parser.add_argument("--text-pair-column", help="second text column for sentence pairs")
    parser.add_argument("--id-column", help="id column copied to the output (default: row number)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, help="truncate to this many tokens (default: the run's)")
    parser.add_argument("--weighted", action="store_true", help="weight folds by their cv.json score")
    parser.add_argument(
        "--ensemble", type=Path, metavar="FILE",
        help="predict with the fold models and weights of an ensemble spec (`ckpt-tui ensemble`, the app's Runs screen)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.ensemble is not None and args.input is None:
        args.run_dir, args.input = None, args.run_dir  # --ensemble FILE INPUT.csv
    if args.input is None:
        parser.error("give RUN_DIR and INPUT, or --ensemble FILE and INPUT")
    if args.ensemble is not None and (args.run_dir is not None or args.weighted):
        parser.error("--ensemble takes only INPUT (its spec names the models and their weights)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from trainer.predict import PredictError, predict

    try:
        frame = predict(
            args.run_dir, args.input, args.output, text_column=args.text_column,
            text_pair_column=args.text_pair_column, id_column=args.id_column, batch_size=args.batch_size,
            max_length=args.max_length, weighted=args.weighted, ensemble=args.ensemble,
        )  # fmt: skip
    except PredictError as e:
        print(f"predict.py: error: {e}", file=sys.stderr)
        return 2
    if os.environ.get("RANK", "0") == "0":
        print(f"wrote {args.output} ({len(frame)} rows)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
