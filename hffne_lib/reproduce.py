"""Run every numbered notebook in order, headless, with papermill (the README's main command).

    python -m hffne_lib.reproduce --preset smoke --device cpu --out results

Executed notebooks go to <out>/notebooks; the notebooks themselves write tables and figures.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"


def notebooks(folder: Path = NOTEBOOK_DIR) -> list[Path]:
    """The numbered notebooks (00_*.ipynb, 01_*.ipynb, ...) in run order."""
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def run_all(preset: str, device: str, out: Path, kernel: str = "python3", only: list[str] | None = None,
            jobs: int = 1, data_root: Path | None = None) -> list[Path]:
    """Execute the notebooks with papermill; returns the executed copies' paths. ``jobs`` > 1 is
    handed to the notebooks as parameter ``jobs`` (03 trains that many refinement runs at once);
    ``data_root`` (default: the notebooks' own, the repository's data/) as ``data_root``, the
    folder that holds synthetic_<data preset>."""
    import papermill

    out = out.resolve()
    executed_dir = out / "notebooks"
    executed_dir.mkdir(parents=True, exist_ok=True)
    parameters = {"preset": preset, "device": device, "results_root": str(out), **({"jobs": jobs} if jobs > 1 else {}),
                  **({"data_root": str(Path(data_root).resolve())} if data_root else {})}
    done = []
    for notebook in notebooks():
        if only and not any(notebook.name.startswith(prefix) for prefix in only):
            continue
        target = executed_dir / notebook.name
        start = time.perf_counter()
        print(f"[reproduce] {notebook.name} (preset={preset}, device={device})", flush=True)
        papermill.execute_notebook(str(notebook), str(target), kernel_name=kernel, cwd=str(notebook.parent),
                                   parameters=parameters,
                                   progress_bar=False)
        print(f"[reproduce] {notebook.name} done in {time.perf_counter() - start:.0f} s -> {target}", flush=True)
        done.append(target)
    if not done:
        raise SystemExit(f"no notebooks to run in {NOTEBOOK_DIR}")
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="smoke", help="experiment preset (ci, smoke, cpu, gpu, paper)")
    parser.add_argument("--device", default="cpu", help="torch device for training and evaluation")
    parser.add_argument("--out", type=Path, default=Path("results"), help="results folder")
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel name")
    parser.add_argument("--only", nargs="*", help="run only notebooks whose names start with these")
    parser.add_argument("--jobs", type=int, default=1, help="refinement runs trained at once (notebook 03; default 1)")
    parser.add_argument("--data-root", type=Path, help="the folder holding synthetic_<data preset> (default: data/)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.exit(2, f"hffne_lib.reproduce: --jobs must be at least 1, got {args.jobs}\n")
    run_all(args.preset, args.device, args.out, args.kernel, args.only, args.jobs, args.data_root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
