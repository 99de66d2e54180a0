"""Tables 1-3 (and a wild-split table the paper does not have), measured on our runs, written
with the paper's reported rows beside them and a provenance header.

    cfg, run_dir = prepare("smoke", "data", "results")
    tables = build_tables(cfg, run_dir)            # {"table1": DataFrame, ...}
    write_tables(tables, "results/tables/smoke", provenance(cfg, run_dir, seconds))

Measured rows are labelled with the split they were measured on (synthetic data in the role of
Photoface or Florence); the paper's rows are labelled "reported by the paper (...)".
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import pandas as pd
from tqdm.auto import tqdm

from .checkpoint import CODE_REVISION, checkpoint_entry, checkpoint_revision
from .config import ExperimentConfig, device_name, software_note
from .evaluate import DETAIL_FREE, FIT_MASK_NOTE, FITTED, REGIONS, Evaluation, evaluate
from .experiments import BEYOND_PAPER_ROW, experiment_checkpoints, experiments, load_experiment
from .files import write_text_atomically
from .fitting import FitSettings
from .paper import COLUMNS, reported_table
from .train import data_manifest_hash, open_split
from .vgg import RANDOM_SOURCE

#: Which experiment rows each table measures, on which split (the role the split plays).
TABLE_ROWS = {
    "table1": ("lab_test", "Photoface", ["Ours-unpaired", "Ours-paired", BEYOND_PAPER_ROW]),
    "table2": ("scans", "Florence", ["Ours-paired"]),
    "table3": ("lab_test", "Photoface", ["Iter1k", "Iter50k", "A1", "A2", "w/o modulation", "AdaIN", "Ours-paired"]),
}
COARSE_ROW = "Coarse exemplar (supervised pix2pix U-Net)"
#: BEYOND THE PAPER: the coarse exemplar fitted to each image (hffne_lib.fitting), when asked for.
FITTED_ROW = "Coarse exemplar + test-time fitting in the true face mask, no refiner (beyond the paper)"
#: The tables that show FITTED_ROW (Table 3 is the paper's exemplar and architecture study).
FITTED_TABLES = ("table1", "table2")
TABLE3_FINAL_ROW = "Iter100k/A3/StyleGAN2"
WILD_SPLIT = "wild_test"
#: Follows the source of a row whose refiner learnt with the random VGG19 (``stand_in_notes``).
STAND_IN_NOTE = "; refiner trained with the RANDOM VGG19 stand-in"
#: Every split the tables measure.
MEASURED_SPLITS = (*dict.fromkeys(split for split, _, _ in TABLE_ROWS.values()), WILD_SPLIT)


def table3_names(cfg: ExperimentConfig) -> dict[str, str]:
    """Our Table 3 rows' names: the paper's, with the coarse iterations this preset's exemplars
    really come from (the final row is Ours-paired, on the final exemplar, as the paper's equals
    its Ours-paired)."""
    early, middle = cfg.coarse_milestones[:2]
    return {"Iter1k": f"Iter1k (exemplar at {early} it.)", "Iter50k": f"Iter50k (exemplar at {middle} it.)",
            "Ours-paired": f"{TABLE3_FINAL_ROW} (final exemplar, {cfg.coarse_iters} it.)"}


def _row(evaluation: Evaluation, stage: str, region: str = "face") -> pd.Series:
    summary = evaluation.summary
    row = summary[(summary["stage"] == stage) & (summary["region"] == region)].iloc[0]
    return row[COLUMNS + ["images"]]


def evaluate_experiments(cfg: ExperimentConfig, run_dir: str | os.PathLike, names: list[str], split: str,
                         progress: bool = True, fitting: FitSettings | None = None) -> dict[str, Evaluation]:
    """``evaluate`` every named experiment on one split (the split's "normal" is the truth);
    one progress bar over the experiments. ``fitting``: "Ours-paired" gets stage FITTED too."""
    dataset = open_split(cfg, split)
    evaluations = {}
    for name in tqdm(names, desc=f"evaluate {split}", disable=not progress or not names):
        estimator = load_experiment(cfg, run_dir, name, cfg.device)
        estimator.fitting = fitting if name == "Ours-paired" else None
        evaluations[name] = evaluate(estimator, dataset, progress=False, name=split)
    return evaluations


def measured_table(cfg: ExperimentConfig, evaluations: dict[str, Evaluation], split: str, role: str,
                   names: dict[str, str] | None = None, notes: dict[str, str] | None = None) -> pd.DataFrame:
    """Rows: the coarse exemplar (the final coarse checkpoint's, from "Ours-paired" when measured),
    FITTED_ROW when that evaluation has stage FITTED, then each run's refined normals, named as in
    ``names`` where it has them (e.g. ``table3_names``), their source followed by the run's entry
    in ``notes`` (``stand_in_notes``)."""
    source = f"measured: synthetic {split} ({role}'s role), preset {cfg.name}"
    reference = evaluations.get("Ours-paired", next(iter(evaluations.values())))
    rows, sources = {COARSE_ROW: _row(reference, "coarse")}, [source]
    if FITTED in set(reference.summary["stage"]):
        rows[FITTED_ROW] = _row(reference, FITTED)
        sources.append(source)
    for name, evaluation in evaluations.items():
        rows[(names or {}).get(name, name)] = _row(evaluation, "refined")
        sources.append(source + (notes or {}).get(name, ""))
    frame = pd.DataFrame(rows).T
    frame.insert(0, "source", sources)
    return frame


def wild_table(cfg: ExperimentConfig, evaluations: dict[str, Evaluation],
               notes: dict[str, str] | None = None) -> pd.DataFrame:
    """The wild split, whole face, detail region and its fine band: coarse vs refined mean error
    for every run. Not in the paper; it tests the paper's claim that refinement beats the exemplar
    in the wild and recovers detail ("fine": evaluate.py's detail-only error; detail is recovered
    only where refined is below the detail-free truth's). An evaluation with stage FITTED adds
    rows FITTED_ROW, whose "refined" columns hold the fitted normals. ``notes`` as for ``measured_table``."""
    source, rows, sources = f"measured: synthetic wild_test (FFHQ/CelebA/300-W role), preset {cfg.name}", {}, []
    for stage in ("refined", FITTED):
        for name, evaluation in evaluations.items():
            if stage not in set(evaluation.summary["stage"]):
                continue
            for region in REGIONS:
                coarse, second = _row(evaluation, "coarse", region), _row(evaluation, stage, region)
                sources.append(source + ("" if stage == FITTED else (notes or {}).get(name, "")))
                rows[(FITTED_ROW if stage == FITTED else name, region)] = {
                    "coarse mean": coarse["mean"], "refined mean": second["mean"],
                    "refined - coarse": second["mean"] - coarse["mean"],
                    "detail-free truth mean": _row(evaluation, DETAIL_FREE, region)["mean"],
                    "refined <20": second["<20"], "images": second["images"]}
    frame = pd.DataFrame(rows).T
    frame.index.names = ["run", "region"]
    frame.insert(0, "source", sources)
    return frame


def build_tables(cfg: ExperimentConfig, run_dir: str | os.PathLike, progress: bool = True,
                 fitting: FitSettings | None = None) -> dict[str, pd.DataFrame]:
    """Measure Tables 1-3 and the wild table, each measured block followed by the paper's rows.
    ``fitting`` (beyond the paper): FITTED_ROW in FITTED_TABLES and the wild table."""
    tables, cache, notes = {}, {}, stand_in_notes(cfg, run_dir)
    for key, (split, role, names) in TABLE_ROWS.items():
        missing = [n for n in names if (n, split) not in cache]
        cache.update({(n, split): e for n, e in
                      evaluate_experiments(cfg, run_dir, missing, split, progress, fitting).items()})
        evaluations = {n: cache[n, split] for n in names}
        if key not in FITTED_TABLES:
            evaluations = {n: _without_fitted(e) for n, e in evaluations.items()}
        measured = measured_table(cfg, evaluations, split, role, table3_names(cfg) if key == "table3" else None, notes)
        reported = reported_table(int(key[-1]))
        tables[key] = pd.concat([measured, reported]).rename_axis("method")
    wild = evaluate_experiments(cfg, run_dir, list(experiments(cfg)), WILD_SPLIT, progress, fitting)
    tables["wild"] = wild_table(cfg, wild, notes)
    return tables


def _without_fitted(evaluation: Evaluation) -> Evaluation:
    """``evaluation`` without its stage FITTED rows."""
    return Evaluation(evaluation.summary[evaluation.summary["stage"] != FITTED],
                      evaluation.per_image[evaluation.per_image["stage"] != FITTED])


def provenance(cfg: ExperimentConfig, run_dir: str | os.PathLike, seconds: float,
               fitting: FitSettings | None = None) -> dict[str, str]:
    """What made a table: code revision (of the measuring code, and of the training code behind each
    checkpoint), preset, device, software, data, VGG weights, the fitting settings of FITTED_ROW, wall
    time."""
    return {"git revision": CODE_REVISION, "checkpoints trained at": training_revisions(cfg, run_dir),
            "preset": cfg.name, "measured on": f"{cfg.device} ({device_name(cfg.device)})",
            "software": software_note(),
            "data manifest hash": data_manifest_hash(cfg, MEASURED_SPLITS), **cfg.split_roots_note(MEASURED_SPLITS),
            "VGG19 weights": vgg_sources(cfg, run_dir),
            **({"fitted": f"{fitting.describe()}; {FIT_MASK_NOTE}"} if fitting else {}), "wall time": f"{seconds:.0f} s"}


def stand_in_notes(cfg: ExperimentConfig, run_dir: str | os.PathLike) -> dict[str, str]:
    """STAND_IN_NOTE for every run whose refiner learnt with the random VGG19 stand-in (as its
    normal encoder, or A1's training loss), "" for the others: the rows their numbers make say so."""
    return {name: STAND_IN_NOTE if RANDOM_SOURCE in checkpoint_entry(experiment_checkpoints(cfg, run_dir, name)[1],
                                                                     "vgg_weight_source", "") else ""
            for name in experiments(cfg)}


def vgg_sources(cfg: ExperimentConfig, run_dir: str | os.PathLike) -> str:
    """The VGG19 weights each refiner the tables read was trained with, grouped:
    ``"<source>"`` when they share one, else ``"<source>: A1, ...; <source>: ..."``."""
    refiners = {name: experiment_checkpoints(cfg, run_dir, name)[1] for name in experiments(cfg)}
    by_source = _grouped((checkpoint_entry(path, "vgg_weight_source", "unknown"), name)
                         for name, path in refiners.items())
    return next(iter(by_source)) if len(by_source) == 1 else _joined(by_source)


def training_revisions(cfg: ExperimentConfig, run_dir: str | os.PathLike) -> str:
    """Which revision wrote each checkpoint the tables read, grouped:
    ``"<revision>: coarse/latest.pt, Ours-paired, ...; <revision>: ..."`` (a resumed run records
    the revision of its last session)."""
    checkpoints: dict[Path, str] = {}    # path -> label, each checkpoint once
    for name in experiments(cfg):
        coarse, refiner = experiment_checkpoints(cfg, run_dir, name)
        checkpoints.setdefault(coarse, f"coarse/{coarse.name}")
        checkpoints.setdefault(refiner, name)
    return _joined(_grouped((checkpoint_revision(path), label) for path, label in checkpoints.items()))


def _grouped(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """(value, label) pairs -> value: its labels, in first-seen order."""
    groups: dict[str, list[str]] = {}
    for value, label in pairs:
        groups.setdefault(value, []).append(label)
    return groups


def _joined(groups: dict[str, list[str]]) -> str:
    """``_grouped``'s result as ``"<value>: label, label; <value>: ..."``."""
    return "; ".join(f"{value}: {', '.join(labels)}" for value, labels in groups.items())


def _rounded(frame: pd.DataFrame) -> pd.DataFrame:
    """Numbers to 2 decimals, image counts as integers (missing for the paper's rows); text as it is."""
    frame = frame.copy()
    for column in frame.columns:
        if column == "images":
            frame[column] = pd.to_numeric(frame[column]).round().astype("Int64")
        elif not pd.api.types.is_string_dtype(frame[column]):
            frame[column] = pd.to_numeric(frame[column]).round(2)
    return frame


def markdown_table(frame: pd.DataFrame) -> str:
    """``frame`` as a GitHub Markdown table: a row label of several levels (the wild table's run
    and region) is one column per level, a missing value an empty cell."""
    levels = frame.index.nlevels
    shown = frame.reset_index() if levels > 1 else frame
    return shown.astype(object).where(shown.notna(), None).to_markdown(index=levels == 1, missingval="")


def write_tables(tables: dict[str, pd.DataFrame], folder: str | os.PathLike, meta: dict[str, str]) -> list[Path]:
    """Each table as CSV, Markdown and LaTeX under ``folder``, each with the provenance header
    (``# key: value`` lines in CSV and Markdown, ``% key: value`` in LaTeX)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    header = [f"{k}: {v}" for k, v in meta.items()]
    written = []
    for name, frame in tables.items():
        frame = _rounded(frame)
        outputs = {   # a missing value (the paper's image counts) is an empty cell in every format
            ".csv": "".join(f"# {line}\n" for line in header) + frame.to_csv(),
            ".md": "".join(f"- {line}\n" for line in header) + "\n" + markdown_table(frame) + "\n",
            ".tex": "".join(f"% {line}\n" for line in header)   # escaped: _ and < (in "<20") are LaTeX syntax
                    + frame.to_latex(float_format="%.2f", escape=True, na_rep="").replace("<", r"\textless{}"),
        }
        for suffix, text in outputs.items():
            path = folder / f"{name}{suffix}"
            write_text_atomically(path, text)
            written.append(path)
    return written
