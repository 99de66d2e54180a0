"""The ``hffne`` command (also ``python -m hffne_lib.cli``).

    hffne predict photo.jpg photos/ --out out/ --checkpoint results/runs/cpu [--recursive]
    hffne compare out/ refs/ --images photos/ --out report/

Exit codes: 0 when at least one input was processed, 1 when none was, 2 for a usage or
weights problem (one line on stderr).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .official import CheckpointError

EXIT_OK, EXIT_NOTHING_DONE, EXIT_USAGE = 0, 1, 2
#: What ``hffne compare --out`` writes; an earlier comparison is kept unless ``--overwrite``.
COMPARISON_FILES = ("per_image.csv", "overall.csv", "comparison.png")


def add_predict_parser(commands: argparse._SubParsersAction) -> None:
    """The ``hffne predict`` sub-command and its options."""
    parser = commands.add_parser("predict", help="normal maps of the faces in photos",
                                 description="Detect, crop and estimate face normals; one folder of outputs per photo.")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="photos (JPEG, PNG, WebP, TIFF, BMP) or folders")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (one sub-folder per photo)")
    parser.add_argument("--recursive", action="store_true", help="read folders' sub-folders too")
    faces = parser.add_mutually_exclusive_group()
    faces.add_argument("--all-faces", action="store_true", help="every detected face, not only the largest")
    faces.add_argument("--aligned", action="store_true",
                       help="the photos are face crops already (FFHQ, CelebA-HQ style): no detection, the whole "
                            "image is the crop")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: skip them)")
    weights = parser.add_argument_group("weights (one kind)")
    weights.add_argument("--checkpoint", nargs="+", metavar="PATH",
                         help="this project's training run: RUN_DIR, RUN_DIR/<refiner stage>, REFINER.pt "
                              "(its coarse checkpoint found in RUN_DIR/coarse), COARSE.pt REFINER.pt, or with "
                              "--fit-steps a coarse checkpoint alone (RUN_DIR/coarse or COARSE.pt)")
    weights.add_argument("--official-exemplar", metavar="FILE", help="the authors' ExemplarModel.pkl")
    weights.add_argument("--official-refiner", metavar="FILE", help="the authors' RefinerModel.pt")
    parser.add_argument("--fit-steps", type=int, default=0, metavar="N",
                        help="BEYOND THE PAPER: in place of the refiner, fit each face's exemplar to its photo in N "
                             "Adam steps (hffne_lib.fitting; 20 was chosen on the cpu benchmark; no refiner needed); "
                             "0 (default): off")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1 (default cpu)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_compare_parser(commands: argparse._SubParsersAction) -> None:
    """The ``hffne compare`` sub-command and its options."""
    parser = commands.add_parser("compare", help="agreement of predictions with reference normal maps",
                                 description="Mean angular difference inside our face mask, per image and "
                                             "overall, plain and after a per-image mean-offset correction.")
    parser.add_argument("pred_dir", metavar="PRED_DIR", help="`hffne predict` output folder")
    parser.add_argument("ref_dir", metavar="REF_DIR", help="reference normal map PNGs, named as the photos")
    parser.add_argument("--images", metavar="DIR", help="the photos, for the figure's input column")
    parser.add_argument("--out", metavar="DIR", help="write per_image.csv, overall.csv and comparison.png here")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier comparison in --out")


def run_predict(args: argparse.Namespace) -> int:
    """``hffne predict``: load the model, predict every photo, print the summary; the exit code."""
    from .data import DetectorUnavailableError
    from .fitting import FitSettings
    from .predict import load_estimator, predict_paths  # torch and the models load only when asked

    start = time.perf_counter()
    try:
        fitting = FitSettings(steps=args.fit_steps) if args.fit_steps else None
        estimator = load_estimator(args.checkpoint, args.official_exemplar, args.official_refiner, args.device, fitting)
    except (CheckpointError, ValueError) as err:
        print(f"hffne predict: {err}", file=sys.stderr)
        return EXIT_USAGE
    print(f"hffne predict: model loaded in {time.perf_counter() - start:.2f} s on {args.device}")
    try:
        summary = predict_paths(estimator, args.paths, args.out, args.recursive, args.all_faces, args.overwrite,
                                progress=not args.no_progress, aligned=args.aligned)
    except DetectorUnavailableError as err:
        print(f"hffne predict: {err}", file=sys.stderr)
        return EXIT_USAGE
    for message in summary.messages:
        print(message, file=sys.stderr)
    print(f"hffne predict: {summary.line()} -> {args.out}")
    return EXIT_OK if summary.counts["done"] else EXIT_NOTHING_DONE


def run_compare(args: argparse.Namespace) -> int:
    """``hffne compare``: pair predictions with reference maps, print and write the tables; the exit code."""
    from .compare import NO_SKILL, compare_pairs, comparison_figure, load_pairs
    from .files import OutputExistsError, check_absent

    for folder in (args.pred_dir, args.ref_dir):
        if not Path(folder).is_dir():
            print(f"hffne compare: {folder}: no such folder", file=sys.stderr)
            return EXIT_USAGE
    files = [Path(args.out) / name for name in COMPARISON_FILES] if args.out else []
    try:
        if not args.overwrite:
            check_absent(files)
    except OutputExistsError as err:
        print(f"hffne compare: {err}", file=sys.stderr)
        return EXIT_USAGE
    pairs, problems = load_pairs(args.pred_dir, args.ref_dir)
    for problem in problems:   # before the tables, and when nothing could be compared, why
        print(problem, file=sys.stderr)
    try:
        table, overall = compare_pairs(pairs)
    except ValueError as err:
        print(f"hffne compare: {err}", file=sys.stderr)
        return EXIT_NOTHING_DONE
    print(table.round(2).to_string())
    print(overall.round(2).to_string())
    print(f"agreement with the reference maps, not accuracy: neither is ground truth; a constant frontal "
          f"normal scores {overall.loc[NO_SKILL, 'mean']:.2f} deg offset-corrected (no skill)")
    if files:
        per_image_csv, overall_csv, figure_png = files
        per_image_csv.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(per_image_csv)
        overall.to_csv(overall_csv)
        comparison_figure(pairs, table, args.images).savefig(figure_png, dpi=80)
        print(f"hffne compare: wrote {', '.join(str(path) for path in files)}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hffne`` console script; returns the exit code."""
    parser = argparse.ArgumentParser(prog="hffne", description="HFFNE face normal estimation.")
    commands = parser.add_subparsers(dest="command", required=True)
    add_predict_parser(commands)
    add_compare_parser(commands)
    args = parser.parse_args(argv)
    return run_predict(args) if args.command == "predict" else run_compare(args)


if __name__ == "__main__":
    sys.exit(main())
