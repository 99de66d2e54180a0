"""The synthetic benchmark on disk: presets, the idempotent and resumable writer, the manifest.

    manifest = build_benchmark("data/synthetic_ci", "ci")      # or a BenchmarkConfig
    data = FaceNormalDataset("data/synthetic_ci", "lab_train")

Layout of a benchmark folder: ``<split>-<k>.npz`` shards (see shards.py) and manifest.json
(settings, counts, identities, sha256 of every shard, package version). While a build runs,
build.json holds its settings; a killed build resumes from its finished shards.
"""
from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .. import __version__
from .sfm import SurreyFaceModel, resolve_sfm_path
from .shards import TMP_SUFFIX, open_shard, readable_shard, sha256_file, write_json, write_shard
from .synthetic import PLAN_STREAM, make_identity, random_stream, render_sample

#: Bump when the generator's output for the same settings changes.
# 2: normals renormalised by conventions.normalize's sum of squares (last-bit changes); 3: one random
# stream per use (synthetic.random_stream; the split plan drew identity 1's numbers), texture blurs
# not periodic (a beard reached the top of the forehead)
GENERATOR_VERSION = 3
FORMAT = "hffne-benchmark/1"
MANIFEST, BUILD_FILE = "manifest.json", "build.json"
SPLITS = ("lab_train", "lab_test", "wild_train", "wild_test", "scans")
#: Identity ids are global: role offset + index within the role.
ROLE_OFFSETS = {"lab": 0, "wild": 1_000_000, "scans": 2_000_000}
#: The folder that holds the benchmarks unless told otherwise (relative to the working directory).
DATA_FOLDER = "data"


def benchmark_folder(preset: str, parent: str | os.PathLike = DATA_FOLDER) -> Path:
    """Where data preset ``preset``'s benchmark lives inside ``parent``: parent/synthetic_<preset>.
    Every default (the data command, the configs, the notebooks) goes through here."""
    return Path(parent) / f"synthetic_{preset}"


@dataclass(frozen=True)
class BenchmarkConfig:
    """What a benchmark holds. Counts are identities per role and renders per identity; the
    test splits take ``test_fraction`` of the lab and wild identities (at least one).

    geometry: "procedural", "sfm", "mix" or "auto" (mix when the Surrey Face Model is given,
    else procedural). lab_specular: max Blinn-Phong strength in lab captures; lab_noise: sensor
    noise std of lab captures (both make photometric stereo imperfect, as on real Photoface).
    """

    size: int = 64
    seed: int = 0
    lab_identities: int = 10
    lab_captures: int = 4
    wild_identities: int = 25
    wild_samples: int = 3
    scan_identities: int = 16
    test_fraction: float = 0.2
    geometry: str = "auto"
    beard_probability: float = 0.3
    lab_specular: float = 0.05
    lab_noise: float = 0.003
    shard_size: int = 64


BENCHMARK_PRESETS: dict[str, BenchmarkConfig] = {
    "ci": BenchmarkConfig(),
    "cpu": BenchmarkConfig(size=128, lab_identities=60, lab_captures=5, wild_identities=150, wild_samples=3,
                           scan_identities=53),
    "gpu": BenchmarkConfig(size=256, lab_identities=200, lab_captures=8, wild_identities=600, wild_samples=4,
                           scan_identities=53, shard_size=32),
    # Photoface: 453 subjects, ~3.2k captures (~12.7k image pairs, ~2.5k in a 20% test split);
    # Florence: 53 scans; wild: an FFHQ-like training set.
    "paper": BenchmarkConfig(size=256, lab_identities=453, lab_captures=7, wild_identities=5000, wild_samples=6,
                             scan_identities=53, shard_size=32),
}


def resolve_config(config: BenchmarkConfig | str) -> BenchmarkConfig:
    """A preset by name, or the config itself."""
    if isinstance(config, BenchmarkConfig):
        return config
    if config not in BENCHMARK_PRESETS:
        raise ValueError(f"unknown benchmark preset {config!r}: use one of {sorted(BENCHMARK_PRESETS)}")
    return BENCHMARK_PRESETS[config]


def split_role(split: str) -> str:
    """lab_train -> lab, scans -> scans."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: use one of {SPLITS}")
    return split.split("_")[0]


def plan_splits(config: BenchmarkConfig) -> dict[str, list[tuple[int, int]]]:
    """Every split's (identity, sample index) list. Test identities are a seeded random
    ``test_fraction`` of each role's identities, so no identity is in two splits."""
    rng = random_stream(config.seed, PLAN_STREAM)
    plan = {}
    for role, count, per in (("lab", config.lab_identities, config.lab_captures),
                             ("wild", config.wild_identities, config.wild_samples)):
        test = set(rng.permutation(count)[:max(1, round(config.test_fraction * count))].tolist())
        for split, chosen in ((f"{role}_train", [i for i in range(count) if i not in test]), (f"{role}_test", sorted(test))):
            plan[split] = [(ROLE_OFFSETS[role] + i, s) for i in chosen for s in range(per)]
    plan["scans"] = [(ROLE_OFFSETS["scans"] + i, 0) for i in range(config.scan_identities)]
    return plan


def build_benchmark(root: str | os.PathLike, config: BenchmarkConfig | str = "ci", sfm_path: str | os.PathLike | None = None,
                    progress: bool = True, workers: int | None = 1) -> dict:
    """Generate a benchmark under ``root`` and return its manifest.

    Idempotent: a finished benchmark with the same settings is returned untouched; other
    settings raise a one-line ValueError and change nothing. Resumable: a killed build goes on
    from its finished shards. ``sfm_path`` (else $HFFNE_SFM_PATH) names the Surrey Face Model;
    ``workers`` > 1 renders shards in parallel processes of one torch thread each, None one per
    CPU core (same output; they are spawned, not forked, as forking after torch has run can hang,
    so a calling script needs the usual ``if __name__ == "__main__":`` guard).
    """
    config = resolve_config(config)
    path = resolve_sfm_path(sfm_path)
    geometry = config.geometry if config.geometry != "auto" else ("mix" if path else "procedural")
    if geometry != "procedural" and path is None:
        raise ValueError(f"geometry {geometry!r} needs the Surrey Face Model: pass sfm_path or set HFFNE_SFM_PATH")
    sfm = SurreyFaceModel(path) if geometry != "procedural" else None
    settings = {**asdict(config), "geometry": geometry, "sfm_sha256": sfm.sha256 if sfm else None,
                "generator_version": GENERATOR_VERSION}
    root = Path(root)
    with build_lock(root):
        return _build(root, config, settings, sfm, path, progress, workers)


def _build(root: Path, config: BenchmarkConfig, settings: dict, sfm: SurreyFaceModel | None, path: Path | None,
           progress: bool, workers: int | None) -> dict:
    """``build_benchmark``'s work, under its lock."""
    finished = begin_build(root, settings)
    if finished is not None:
        return finished
    jobs = [(root / f"{split}-{k:05d}.npz", split, chunk)
            for split, items in plan_splits(config).items()
            for k, chunk in enumerate(items[i:i + config.shard_size] for i in range(0, len(items), config.shard_size))]
    for file, _, _ in jobs:        # a shard a crash left unreadable is rendered again
        if file.exists() and not readable_shard(file):
            file.unlink()
    todo = [(str(file), split, chunk, settings, str(path) if sfm else None) for file, split, chunk in jobs if not file.exists()]
    workers = min(available_cores() if workers is None else workers, len(todo))
    with tqdm(total=sum(len(c) for _, _, c in jobs), initial=sum(len(c) for f, _, c in jobs if f.exists()),
              desc=f"benchmark {root.name}", unit="sample", disable=not progress) as bar:
        if workers > 1:
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                     initializer=torch.set_num_threads, initargs=(1,)) as pool:
                for count in pool.map(_build_shard, todo):
                    bar.update(count)
        else:
            for job in todo:
                bar.update(_build_shard(job, sfm))
    return finish_build(root, settings, [(file, split) for file, split, _ in jobs])


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the system has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextmanager
def build_lock(root: Path) -> Iterator[None]:
    """Hold an exclusive lock on the data set folder (made if missing) while it is written: a
    second build of it (another training process, a notebook) waits, then finds it finished."""
    root.mkdir(parents=True, exist_ok=True)
    folder = os.open(root, os.O_RDONLY)
    try:
        try:
            fcntl.flock(folder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"{root}: another process is building it; waiting for it to finish", file=sys.stderr, flush=True)
            fcntl.flock(folder, fcntl.LOCK_EX)
        yield
    finally:
        os.close(folder)        # releases the lock


def begin_build(root: Path, settings: dict) -> dict | None:
    """Start or resume writing a dataset folder: the finished manifest if root already holds
    one with these settings; else None after recording the settings (build.json) and removing
    interrupted writes. A folder with other settings or foreign files is a one-line error."""
    settings = json.loads(json.dumps(settings))         # as it reads back from JSON
    existing = _existing_settings(root)
    if existing is not None and existing != settings:
        changed = ", ".join(f"{k}: {existing.get(k)!r} -> {v!r}" for k, v in settings.items() if existing.get(k) != v)
        raise ValueError(f"{root} holds a data set built with other settings ({changed}); use another folder or delete it")
    if (root / MANIFEST).exists():
        return json.loads((root / MANIFEST).read_text())
    root.mkdir(parents=True, exist_ok=True)
    write_json(root / BUILD_FILE, settings)
    for leftover in root.glob("*" + TMP_SUFFIX):
        leftover.unlink()
    return None


def finish_build(root: Path, settings: dict, shards: list[tuple[Path, str]]) -> dict:
    """Write the manifest of the finished (shard file, split) list and return it."""
    splits = {}
    for file, split in shards:
        identities = open_shard(file)["identity"]
        entry = splits.setdefault(split, {"role": split_role(split), "samples": 0, "identities": [], "shards": []})
        entry["samples"] += len(identities)
        entry["identities"] = sorted(set(entry["identities"]) | set(identities.tolist()))
        entry["shards"].append({"file": file.name, "samples": len(identities), "sha256": sha256_file(file)})
    manifest = {"format": FORMAT, "package_version": __version__, "settings": settings, "splits": splits}
    write_json(root / MANIFEST, manifest)
    (root / BUILD_FILE).unlink()
    return manifest


def _existing_settings(root: Path) -> dict | None:
    """Settings of the benchmark (finished or interrupted) in root; None for a missing or empty
    folder; a one-line error for a folder holding something else."""
    for name in (MANIFEST, BUILD_FILE):
        if (root / name).exists():
            saved = json.loads((root / name).read_text())
            return saved["settings"] if name == MANIFEST else saved
    if root.exists() and any(root.iterdir()):
        raise ValueError(f"{root} is not empty and holds no benchmark; use an empty or new folder")
    return None


def _build_shard(job: tuple, sfm: SurreyFaceModel | None = None) -> int:
    """Render one shard's samples and write it; returns the sample count."""
    file, split, chunk, settings, sfm_path = job
    if sfm is None and sfm_path is not None:
        sfm = SurreyFaceModel(sfm_path)
    role, size, seed = split_role(split), settings["size"], settings["seed"]
    samples, identity = [], None
    for identity_id, index in chunk:
        if identity is None or identity.identity != identity_id:
            identity = make_identity(identity_id, role, seed, size, settings["geometry"], sfm, settings["beard_probability"])
        samples.append(render_sample(identity, role, index, seed, size, lab_specular=settings["lab_specular"],
                                     lab_noise=settings["lab_noise"]))
    write_shard(file, pack_samples(samples, role))
    return len(chunk)


def pack_samples(samples: list[dict], role: str) -> dict[str, np.ndarray]:
    """Stack render_sample outputs into shard arrays, 8-bit / float16 where precision allows."""
    def stack(key, dtype, scale=None):
        values = torch.stack([s[key] for s in samples])
        values = torch.round(values * scale) if scale else values
        return values.numpy().astype(dtype)
    arrays = {"identity": np.array([s["identity"] for s in samples], dtype=np.int64),
              "mask": stack("mask", bool), "detail_mask": stack("detail_mask", bool),
              "normal_exact": stack("normal_exact", np.float16), "pose": stack("pose", np.float32),
              "albedo": stack("albedo", np.uint8, 255.0)}
    if role == "lab":
        arrays.update(images=stack("images", np.uint8, 255.0), lights=stack("lights", np.float32),
                      normal=stack("normal", np.float16))
    else:
        arrays.update(rgb=stack("rgb", np.uint8, 255.0), shading=stack("shading", np.float16),
                      light=stack("light", np.float32))
    return arrays


def manifest_hash(root: str | os.PathLike) -> str:
    """sha256 of a benchmark's manifest.json (which holds every shard's sha256): records in
    checkpoints and results which data made them."""
    return sha256_file(manifest_path(root))


def manifest_path(root: str | os.PathLike) -> Path:
    """root/manifest.json, or a one-line FileNotFoundError saying how to make it."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"no benchmark at {root}: build it first with python -m hffne_lib.data --preset "
                                f"PRESET --root {root} (PRESET: the data preset it is for, {', '.join(BENCHMARK_PRESETS)}) "
                                f"or notebooks/00_data_prep.ipynb")
    return path


def summarize_manifest(manifest: dict) -> pd.DataFrame:
    """One row per split: role, renders (samples), dataset items, identities and shards."""
    rows = [{"split": split, "role": entry["role"], "samples": entry["samples"],
             "items": entry["samples"] * (4 if entry["role"] == "lab" else 1),
             "identities": len(entry["identities"]), "shards": len(entry["shards"])}
            for split, entry in manifest["splits"].items()]
    return pd.DataFrame(rows).set_index("split")
