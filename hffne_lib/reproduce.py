"""Run every numbered notebook in order, headless, with papermill (the README's main command).

    python -m hffne_lib.reproduce --preset smoke --device cpu --out results

Executed notebooks go to <out>/notebooks/<preset>; the notebooks themselves write tables and figures.
A notebook that fails stops the run with one line naming it, the error and its executed copy
(which holds the traceback); the same command then resumes, reusing every finished run.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .config import PRESETS

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"


class NotebookFailed(Exception):
    """A notebook raised; the message names it, the error and its executed copy."""


def notebooks(folder: Path = NOTEBOOK_DIR) -> list[Path]:
    """The numbered notebooks (00_*.ipynb, 01_*.ipynb, ...) in run order."""
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def run_all(preset: str, device: str | None, out: Path, kernel: str = "python3", only: list[str] | None = None,
            jobs: int = 1, data_root: Path | None = None) -> list[Path]:
    """Execute the notebooks with papermill into ``out/notebooks/<preset>/``; returns the executed
    copies' paths. Each notebook gets those of the parameters below that its parameters cell
    declares; ``device`` None leaves the preset's (cpu; cuda for gpu and paper). ``jobs`` > 1 is
    handed to the notebooks as parameter ``jobs`` (03 trains that many refinement runs at once);
    ``data_root`` (default: the notebooks' own, the repository's data/) as ``data_root``, the
    folder that holds synthetic_<data preset>. Raises NotebookFailed at the first notebook that fails."""
    import papermill

    out = out.resolve()
    executed_dir = out / "notebooks" / preset
    executed_dir.mkdir(parents=True, exist_ok=True)
    parameters = {"preset": preset, **({"device": device} if device else {}), "results_root": str(out),
                  **({"jobs": jobs} if jobs > 1 else {}),
                  **({"data_root": str(Path(data_root).resolve())} if data_root else {})}
    device_shown = device or "the preset's"
    done = []
    for notebook in notebooks():
        if only and not any(notebook.name.startswith(prefix) for prefix in only):
            continue
        target = executed_dir / notebook.name
        start = time.perf_counter()
        print(f"[reproduce] {notebook.name} (preset={preset}, device={device_shown})", flush=True)
        declared = papermill.inspect_notebook(str(notebook))
        try:
            papermill.execute_notebook(str(notebook), str(target), kernel_name=kernel, cwd=str(notebook.parent),
                                       parameters={k: v for k, v in parameters.items() if k in declared},
                                       progress_bar=False)
        except papermill.PapermillExecutionError as err:
            first_line = next(iter(str(err.evalue).splitlines()), "")
            raise NotebookFailed(f"{notebook.name} failed in cell [{err.exec_count}] with {err.ename}: {first_line} "
                                 f"(traceback in {target})") from None
        print(f"[reproduce] {notebook.name} done in {time.perf_counter() - start:.0f} s -> {target}", flush=True)
        done.append(target)
    if not done:
        raise SystemExit(f"no notebooks to run in {NOTEBOOK_DIR}")
    return done


def main(argv: list[str] | None = None) -> int:
    """``python -m hffne_lib.reproduce`` (``make reproduce``): run the notebooks in order; the exit code."""
    parser = argparse.ArgumentParser(prog="python -m hffne_lib.reproduce", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="smoke", choices=list(PRESETS), help="experiment preset (default smoke)")
    parser.add_argument("--device", help="torch device for training and evaluation (default: the preset's, "
                                          "cpu; cuda for gpu and paper)")
    parser.add_argument("--out", type=Path, default=Path("results"), help="results folder")
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel name")
    parser.add_argument("--only", nargs="*", help="run only notebooks whose names start with these")
    parser.add_argument("--jobs", type=int, default=1, help="refinement runs trained at once (notebook 03; default 1)")
    parser.add_argument("--data-root", type=Path, help="the folder holding synthetic_<data preset> (default: data/)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.exit(2, f"hffne_lib.reproduce: --jobs must be at least 1, got {args.jobs}\n")
    names = [notebook.name for notebook in notebooks()]
    unmatched = [prefix for prefix in args.only or [] if not any(name.startswith(prefix) for name in names)]
    if unmatched:
        parser.exit(2, f"hffne_lib.reproduce: --only {unmatched[0]} matches no notebook; they are {', '.join(names)}\n")
    try:
        run_all(args.preset, args.device, args.out, args.kernel, args.only, args.jobs, args.data_root)
    except NotebookFailed as err:
        print(f"hffne_lib.reproduce: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
