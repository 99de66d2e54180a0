"""Run every numbered notebook in order, headless, with papermill (the README's main command).

    python -m hffne_lib.reproduce --preset smoke --device cpu --out results

Executed notebooks go to <out>/notebooks/<preset>; the notebooks themselves write tables and figures.
A notebook that fails stops the run with one line naming it, the error and its executed copy
(which holds the traceback); the same command then resumes, reusing every finished run. A device
the machine lacks, VGG19 weights that are not where HFFNE_VGG19_WEIGHTS says and an unknown
kernel are refused in one line before any notebook runs (exit code 2).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .config import PRESETS, check_before_training, get_config
from .data.sfm import SFM_ENV
from .figures import REAL_FACES_ENV
from .vgg import VGG19_ENV

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"

#: Environment variables naming files or folders that the notebooks (run in notebooks/) read.
PATH_VARIABLES = (VGG19_ENV, SFM_ENV, REAL_FACES_ENV)


class NotebookFailed(Exception):
    """A notebook raised; the message names it, the error and its executed copy."""


def notebooks(folder: Path = NOTEBOOK_DIR) -> list[Path]:
    """The numbered notebooks (00_*.ipynb, 01_*.ipynb, ...) in run order."""
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def selected(only: list[str] | None = None) -> list[Path]:
    """The numbered notebooks whose names start with one of ``only`` (None or empty: all), in run order."""
    return [notebook for notebook in notebooks() if not only or any(notebook.name.startswith(p) for p in only)]


@contextmanager
def absolute_path_variables(names: tuple[str, ...] = PATH_VARIABLES) -> Iterator[None]:
    """While open, each of the environment variables ``names`` set to a relative path names it
    from the current directory (absolute), for the notebooks' kernels, which inherit the
    environment and run in notebooks/; restored on exit."""
    relative = {name: os.environ[name] for name in names
                if os.environ.get(name) and not Path(os.environ[name]).expanduser().is_absolute()}
    os.environ.update({name: str(Path(value).absolute()) for name, value in relative.items()})
    try:
        yield
    finally:
        os.environ.update(relative)


def run_all(preset: str, device: str | None, out: Path, kernel: str = "python3", only: list[str] | None = None,
            jobs: int = 1, data_root: Path | None = None) -> list[Path]:
    """Execute the notebooks with papermill into ``out/notebooks/<preset>/``; returns the executed
    copies' paths. Each notebook gets those of the parameters below that its parameters cell
    declares; ``device`` None leaves the preset's (cpu; cuda for gpu and paper). ``jobs`` > 1 is
    handed to the notebooks as parameter ``jobs`` (03 trains that many refinement runs at once);
    ``data_root`` (default: the notebooks' own, the repository's data/) as ``data_root``, the
    folder that holds synthetic_<data preset>. Relative paths in PATH_VARIABLES are taken from
    the current directory. Before any notebook runs, when one of them takes a ``device``: a
    one-line ValueError for a device this machine lacks, FileNotFoundError for VGG19 weights
    that are not where HFFNE_VGG19_WEIGHTS says (config.check_before_training). ValueError for
    an unknown ``kernel``; NotebookFailed at the first notebook that fails or whose kernel dies."""
    import papermill
    from jupyter_client.kernelspec import NoSuchKernel, find_kernel_specs
    from nbclient.exceptions import DeadKernelError

    out = out.resolve()
    executed_dir = out / "notebooks" / preset
    parameters = {"preset": preset, **({"device": device} if device else {}), "results_root": str(out),
                  **({"jobs": jobs} if jobs > 1 else {}),
                  **({"data_root": str(Path(data_root).resolve())} if data_root else {})}
    device_shown = device or "the preset's"
    declared = {notebook: papermill.inspect_notebook(str(notebook)) for notebook in selected(only)}
    if not declared:
        raise SystemExit(f"no notebooks to run in {NOTEBOOK_DIR}")
    done = []
    with absolute_path_variables():
        if any("device" in names for names in declared.values()):   # the data build (00) needs neither
            check_before_training(get_config(preset, **({"device": device} if device else {})))
        executed_dir.mkdir(parents=True, exist_ok=True)
        for notebook, names in declared.items():
            target = executed_dir / notebook.name
            start = time.perf_counter()
            print(f"[reproduce] {notebook.name} (preset={preset}, device={device_shown})", flush=True)
            try:
                papermill.execute_notebook(str(notebook), str(target), kernel_name=kernel, cwd=str(notebook.parent),
                                           parameters={k: v for k, v in parameters.items() if k in names},
                                           progress_bar=False)
            except papermill.PapermillExecutionError as err:
                first_line = next(iter(str(err.evalue).splitlines()), "")
                raise NotebookFailed(f"{notebook.name} failed in cell [{err.exec_count}] with {err.ename}: "
                                     f"{first_line} (traceback in {target})") from None
            except DeadKernelError:
                raise NotebookFailed(f"{notebook.name}: its kernel died, most likely out of memory (try a smaller "
                                     f"preset or fewer --jobs); {target} shows how far it got, and the same command "
                                     f"resumes") from None
            except NoSuchKernel:
                raise ValueError(f"no Jupyter kernel named {kernel!r} to run {notebook.name}; give --kernel one of: "
                                 f"{', '.join(sorted(find_kernel_specs())) or 'none installed'} (or install one: "
                                 f"python -m ipykernel install --user --name python3)") from None
            print(f"[reproduce] {notebook.name} done in {time.perf_counter() - start:.0f} s -> {target}", flush=True)
            done.append(target)
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
    unmatched = [prefix for prefix in args.only or [] if not selected([prefix])]
    if unmatched:
        parser.exit(2, f"hffne_lib.reproduce: --only {unmatched[0]} matches no notebook; they are {', '.join(names)}\n")
    try:
        run_all(args.preset, args.device, args.out, args.kernel, args.only, args.jobs, args.data_root)
    except NotebookFailed as err:
        print(f"hffne_lib.reproduce: {err}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError) as err:     # a device, VGG19 weights or kernel it cannot have
        print(f"hffne_lib.reproduce: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
