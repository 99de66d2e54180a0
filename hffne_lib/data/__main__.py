"""Build a synthetic benchmark from the shell, on every CPU core by default.

    python -m hffne_lib.data --preset gpu                   # -> data/synthetic_gpu
    python -m hffne_lib.data --preset cpu --root /scratch/bench --workers 8
    python -m hffne_lib.data --photos ~/ffhq/images1024x1024 --aligned --root data/ffhq_wild   # real photos
    python -m hffne_lib.data --scans ~/florence --root data/florence_scans                    # real scans

The folder defaults to ``data/synthetic_<preset>``, where the notebooks and the training
commands look (``--set data_root=...``). A finished benchmark is left as it is; a killed build
resumes. ``--photos`` prepares real face photos instead, as split wild_train without ground truth
(``prepared.prepare_wild_photos``), for training the refiner through the config's ``split_roots``;
``--scans`` prepares textured 3D scans as split scans, with ground truth, for Table 2
(``scans.prepare_scans``).
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
from .raster import rotation_matrix
from .scans import APPEARANCES, CROPS, prepare_scans


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
    parser.add_argument("--scans", type=Path, metavar="DIR",
                        help="prepare the OBJ/PLY scans under DIR (recursively) into --root as split scans: each "
                             "rendered from its own texture or vertex colours beside its normals (Florence's role)")
    parser.add_argument("--crop", choices=CROPS, default="detect",
                        help="with --scans: detect (default): crop the face found in the render as photos are "
                             "cropped; box: frame the whole scan")
    parser.add_argument("--appearance", choices=APPEARANCES, default="colour",
                        help="with --scans: colour (default): the scan's own colour; shaded: grey, under --light")
    parser.add_argument("--light", type=float, nargs=2, metavar=("AZIMUTH", "ELEVATION"),
                        help="with --scans: light the render from these angles in degrees (default: a coloured scan "
                             "as captured, unlit; a scan without colour from the front, 20 degrees above)")
    parser.add_argument("--rotation", type=float, nargs=3, metavar=("YAW", "PITCH", "ROLL"),
                        help="with --scans: turn every scan by these angles in degrees first, to face the camera "
                             "(+z) with y up (default: as stored)")
    parser.add_argument("--size", type=int, default=256, help="with --photos or --scans: crop side in px, the model's "
                                                              "resolution (default 256)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    if args.photos is not None and args.scans is not None:
        parser.error("give --photos or --scans, not both: they make different data sets")
    for given, what in ((args.photos, "--photos"), (args.scans, "--scans")):
        if given is not None and args.root is None:
            parser.error(f"{what} needs --root, the folder to write the prepared data set to")
    root = args.root or benchmark_folder(args.preset)
    try:
        if root.exists() and not root.is_dir():
            raise ValueError(f"{root} is a file, not a folder: choose another --root")
        if args.photos is not None:
            manifest = prepare_wild_photos(args.photos, root, args.size, aligned=args.aligned,
                                           progress=not args.no_progress)
        elif args.scans is not None:
            manifest = prepare_scans(args.scans, root, args.size, args.crop, args.appearance,
                                     None if args.light is None else tuple(args.light),
                                     rotation=None if args.rotation is None else rotation_matrix(*args.rotation),
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
    if args.scans is not None:
        print(f"evaluate on them with --split-root scans={root} (see {root / 'report.csv'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
