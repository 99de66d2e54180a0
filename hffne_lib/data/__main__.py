"""Build a synthetic benchmark from the shell, on every CPU core by default.

    python -m hffne_lib.data --preset gpu                   # -> data/synthetic_gpu
    python -m hffne_lib.data --preset cpu --root /scratch/bench --workers 8
    python -m hffne_lib.data --photos ~/ffhq/images1024x1024 --aligned --root data/ffhq_wild   # real photos

The folder defaults to ``data/synthetic_<preset>``, where the notebooks and the training
commands look (``--set data_root=...``). A finished benchmark is left as it is; a killed build
resumes. ``--photos`` prepares real face photos instead, as split wild_train without ground truth
(``prepared.prepare_wild_photos``), for training the refiner through the config's ``split_roots``.
Exit code 2 with one line on stderr for a bad preset, a folder holding other data or one that
cannot be written.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .benchmark import BENCHMARK_PRESETS, available_cores, benchmark_folder, build_benchmark, manifest_hash, summarize_manifest
from .faces import DetectorUnavailableError
from .prepared import prepare_wild_photos


def main(argv: list[str] | None = None) -> int:
    """``python -m hffne_lib.data``: build (or check) a benchmark; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m hffne_lib.data", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="ci", choices=sorted(BENCHMARK_PRESETS), help="data preset (default ci)")
    parser.add_argument("--root", type=Path, help="benchmark folder (default data/synthetic_<preset>)")
    parser.add_argument("--workers", type=int, default=None,
                        help=f"rendering processes (default: one per CPU core, here {available_cores()})")
    parser.add_argument("--sfm-path", help="the Surrey Face Model npz (default $HFFNE_SFM_PATH; else procedural faces)")
    parser.add_argument("--photos", type=Path, metavar="DIR",
                        help="prepare the face photos under DIR (recursively) into --root as split wild_train, without "
                             "ground truth: the refinement's training images (FFHQ, CelebA, 300-W)")
    parser.add_argument("--aligned", action="store_true",
                        help="with --photos: the photos are face crops already (FFHQ, CelebA-HQ), no detection")
    parser.add_argument("--size", type=int, default=256, help="with --photos: crop side in px, the model's "
                                                              "resolution (default 256)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    if args.photos is not None and args.root is None:
        parser.error("--photos needs --root, the folder to write the prepared photos to")
    root = args.root or benchmark_folder(args.preset)
    try:
        if root.exists() and not root.is_dir():
            raise ValueError(f"{root} is a file, not a folder: choose another --root")
        if args.photos is not None:
            manifest = prepare_wild_photos(args.photos, root, args.size, aligned=args.aligned,
                                           progress=not args.no_progress)
        else:
            manifest = build_benchmark(root, args.preset, args.sfm_path, progress=not args.no_progress,
                                       workers=args.workers)
    except (ValueError, OSError, DetectorUnavailableError) as err:   # OSError: a folder that cannot be written
        print(f"python -m hffne_lib.data: {err}", file=sys.stderr)
        return 2
    print(summarize_manifest(manifest).to_string())
    print(f"{root}: manifest sha256 {manifest_hash(root)}")
    if args.photos is not None:
        print(f"train the refiner on them with --set \"split_roots=('wild_train={root}',)\" (see {root / 'report.csv'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
