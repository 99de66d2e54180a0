"""Real data sets in the benchmark's shard format, so that training and evaluation read them as they
read the synthetic benchmark (``FaceNormalDataset``).

``prepare_wild_photos`` makes split ``wild_train`` from a folder of ordinary face photos (FFHQ,
CelebA, 300-W): the refinement's training images, which need no ground truth. Use it beside a
benchmark or a Photoface folder through the config's ``split_roots``:

    prepare_wild_photos("~/ffhq/images1024x1024", "data/ffhq_wild", aligned=True)
    python -m hffne_lib.train refiner --set "split_roots=('wild_train=data/ffhq_wild',)"

``build_from_chunks`` is the build loop shared with ``photoface.prepare_photoface``: one shard per
chunk of inputs, each with its report part, so a killed build resumes at the first unfinished shard
and the report lists every input once.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .benchmark import begin_build, build_lock, finish_build
from .faces import CROP_SCALE, check_outside, crop_folder, face_mask
from .images import list_files, write_report
from .shards import write_shard

#: The report of a prepared data set, beside its manifest.
REPORT = "report.csv"
#: Report columns of ``prepare_wild_photos`` (``faces.crop_folder``'s rows).
PHOTO_REPORT_COLUMNS = ["file", "status", "message", "faces", "height", "width", "x", "y", "w", "h", "scale", "tx", "ty"]

#: A chunk's shard arrays (None: no input of the chunk could be used) and its report rows.
ShardMaker = Callable[[Sequence], tuple[dict[str, np.ndarray] | None, list[dict]]]


def build_from_chunks(target: Path, settings: dict, chunks: list[tuple[str, Sequence]], make_shard: ShardMaker,
                      columns: list[str], desc: str, progress: bool = True) -> dict:
    """Write ``target`` as a data set of ``settings`` (resumable, idempotent and refused over other
    settings, as ``benchmark.build_benchmark``): for each (split, inputs) of ``chunks`` the shard
    ``make_shard(inputs)`` returns, as <split>-<k>.npz, then the report of every input in
    target/report.csv (``columns``), with a progress bar of inputs (``desc``). Returns the manifest.
    A split left without any sample is a one-line ValueError pointing at the report."""
    with build_lock(target):   # a second build of the same folder waits, then finds it finished
        finished = begin_build(target, settings)
        if finished is not None:
            return finished
        shards, parts, counts = [], [], {}
        bar = tqdm(total=sum(len(inputs) for _, inputs in chunks), desc=desc, unit="input", disable=not progress)
        for split, inputs in chunks:
            k = counts[split] = counts.get(split, -1) + 1
            file, part = target / f"{split}-{k:05d}.npz", target / f"{split}-{k:05d}.report.csv"
            if not part.exists():           # written last: its shard (if any) is complete
                arrays, rows = make_shard(inputs)
                if arrays is not None:
                    write_shard(file, arrays)
                write_report(pd.DataFrame(rows, columns=columns), part)
            shards.append((file, split))
            parts.append(part)
            bar.update(len(inputs))
        bar.close()
        write_report(pd.concat([pd.read_csv(part, keep_default_na=False) for part in parts], ignore_index=True),
                     target / REPORT)
        for split in dict.fromkeys(split for split, _ in chunks):
            if not any(file.exists() for file, s in shards if s == split):
                raise ValueError(f"{target}: no usable input for {split} (every one failed): see {target / REPORT}")
        manifest = finish_build(target, settings, [(file, split) for file, split in shards if file.exists()])
        for part in parts:
            part.unlink()
        return manifest


def prepare_wild_photos(source: str | os.PathLike, target: str | os.PathLike, size: int = 256,
                        scale: float = CROP_SCALE, aligned: bool = False, shard_size: int = 256,
                        progress: bool = True) -> dict:
    """Every photo under ``source`` (recursively) to split ``wild_train`` in ``target``: the largest
    face cropped by the data-prep protocol (``faces.crop_folder``; ``aligned``: the photos are face
    crops already, as FFHQ's and CelebA-HQ's, no detection), with the face ellipse as its mask
    (``faces.face_mask``). No ground truth: its items hold gray, rgb, mask and identity (the photo's
    index) only, enough to train the refiner, not to measure anything. Unreadable and face-less
    photos are listed in target/report.csv and left out. Returns the manifest."""
    source, target = Path(source).expanduser(), Path(target).expanduser()
    files = list_files(source)
    if not files:
        raise ValueError(f"{source}: no images (.jpg, .png, ...) in it or below it")
    check_outside(source, target)
    relative = [str(file.relative_to(source)) for file in files]
    settings = {"source": "photos", "root": str(source.resolve()), "files": relative, "size": size, "scale": scale,
                "aligned": aligned, "split": "wild_train", "ground_truth": False}
    mask = face_mask(size, scale)[None]

    def make_shard(chunk: Sequence[int]) -> tuple[dict[str, np.ndarray] | None, list[dict]]:
        rows, crops, kept = [], [], []
        for (row, crop), index in zip(crop_folder(source, [files[i] for i in chunk], size, scale, aligned,
                                                  progress=False), chunk):
            rows.append(row)
            if crop is not None:
                crops.append(np.round(np.moveaxis(crop, -1, 0) * 255).astype(np.uint8))
                kept.append(index)
        if not crops:
            return None, rows
        return {"identity": np.array(kept, dtype=np.int64), "rgb": np.stack(crops),
                "mask": np.repeat(mask[None], len(crops), axis=0)}, rows

    chunks = [("wild_train", range(k, min(k + shard_size, len(files)))) for k in range(0, len(files), shard_size)]
    return build_from_chunks(target, settings, chunks, make_shard, PHOTO_REPORT_COLUMNS, "photos", progress)
