"""FaceNormalDataset: one split of a benchmark folder as a torch Dataset of float tensors."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from ..conventions import encode_rgb, normalize, rgb_to_gray, shade_lambertian
from ..metrics import evaluate_set
from .benchmark import SPLITS, manifest_path, split_role
from .images import to_uint8
from .shards import open_shard, sha256_file
from .synthetic import LIGHT_FIELDS

#: Where the light's colour (red, green, blue) sits in an item's "light" vector.
LIGHT_COLOUR = [LIGHT_FIELDS.index(name) for name in ("red", "green", "blue")]


class FaceNormalDataset(Dataset):
    """Items of one split (lab_train, lab_test, wild_train, wild_test or scans), each a dict:

    gray 1 x H x W and rgb 3 x H x W in [0, 1]; normal 3 x H x W unit in the mask, zero outside
    (photometric-stereo normals for lab); normal_exact 3 x H x W (the renderer's); mask and
    detail_mask 1 x H x W in {0, 1}; albedo 3 x H x W; gray_albedo 1 x H x W (the albedo as the grey
    image sees it: tinted by the light's colour, then grey); shading 1 x H x W; light (LIGHT_FIELDS);
    pose 3 (yaw, pitch, roll deg); identity (int).

    A lab capture has four images, so a lab split has four items per capture (one per light,
    with that light in "light"; rgb is the grey image three times). Real photos without ground truth
    (``prepared.prepare_wild_photos``; ``ground_truth`` False) give gray, rgb, mask and identity only.
    Shards are memory-mapped: an item reads only its own bytes. ``verify`` checks every shard's
    sha256 first.
    """

    def __init__(self, root: str | os.PathLike, split: str, verify: bool = False):
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}: use one of {SPLITS}")
        self.root = Path(root)
        self.manifest = json.loads(manifest_path(root).read_text())
        self.role = split_role(split)
        if split not in self.manifest["splits"]:   # e.g. prepare_photoface's data: lab splits only
            raise ValueError(f"{root} holds no {split!r} split (it has {', '.join(self.manifest['splits'])})")
        shards = self.manifest["splits"][split]["shards"]
        if verify:
            for shard in shards:
                if sha256_file(self.root / shard["file"]) != shard["sha256"]:
                    raise ValueError(f"{self.root / shard['file']}: sha256 differs from the manifest (damaged shard)")
        self.files = [self.root / s["file"] for s in shards]
        self.views = 4 if self.role == "lab" else 1
        counts = [s["samples"] * self.views for s in shards]
        self.ends = np.cumsum(counts)
        self._open: dict[int, dict[str, np.memmap]] = {}
        self.ground_truth = bool(self.manifest["settings"].get("ground_truth", True))

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        shard = int(np.searchsorted(self.ends, index, side="right"))
        local = index - (int(self.ends[shard - 1]) if shard else 0)
        if shard not in self._open:
            self._open[shard] = open_shard(self.files[shard])
        arrays = self._open[shard]
        row, view = divmod(local, self.views)
        tensor = lambda key, scale=1.0: torch.from_numpy(np.array(arrays[key][row], dtype=np.float32)) * scale
        if not self.ground_truth:
            rgb = tensor("rgb", 1 / 255)
            return {"rgb": rgb, "gray": rgb_to_gray(rgb[None])[0], "mask": tensor("mask"),
                    "identity": int(arrays["identity"][row])}
        item = {"normal_exact": normalize(tensor("normal_exact")[None])[0],
                "mask": tensor("mask"), "detail_mask": tensor("detail_mask"), "pose": tensor("pose"),
                "albedo": tensor("albedo", 1 / 255).expand(3, -1, -1).contiguous(),
                "identity": int(arrays["identity"][row])}
        if self.role == "lab":
            light = tensor("lights")[view]
            item["gray"] = tensor("images", 1 / 255)[view:view + 1]
            item["rgb"] = item["gray"].expand(3, -1, -1).contiguous()
            item["normal"] = normalize(tensor("normal")[None])[0]
            item["shading"] = shade_lambertian(item["normal_exact"][None], light)[0]
            item["light"] = _directional_light(light)
        else:
            item["rgb"] = tensor("rgb", 1 / 255)
            item["gray"] = rgb_to_gray(item["rgb"][None])[0]
            item["normal"] = item["normal_exact"]
            item["shading"] = tensor("shading")
            item["light"] = tensor("light")
        colour = item["light"][LIGHT_COLOUR]
        item["gray_albedo"] = rgb_to_gray((item["albedo"] * colour[:, None, None])[None])[0]
        return item


class FieldsOf(Dataset):
    """The items of ``dataset`` with only ``keys``: data sets with other fields (real photos carry no
    ground truth) then batch together, and a batch carries only what its reader needs."""

    def __init__(self, dataset: Dataset, keys: tuple[str, ...]):
        self.dataset, self.keys = dataset, keys

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        item = self.dataset[index]
        return {key: item[key] for key in self.keys}


def _directional_light(direction: torch.Tensor) -> torch.Tensor:
    """LIGHT_FIELDS vector of a white unit-strength directional light with no ambient."""
    values = dict.fromkeys(LIGHT_FIELDS, 0.0)
    values.update(strength=1.0, dir_x=float(direction[0]), dir_y=float(direction[1]), dir_z=float(direction[2]),
                  red=1.0, green=1.0, blue=1.0)
    return torch.tensor([values[k] for k in LIGHT_FIELDS])


def preview_grid(dataset: Dataset, count: int = 4, stride: int | None = None) -> np.ndarray:
    """A picture of ``count`` items spread over a dataset: one row per item with its rgb image,
    normal, normal_exact (RGB-encoded), mask and detail mask -> H' x W' x 3 uint8."""
    stride = stride or max(1, len(dataset) // count)
    rows = []
    for index in range(0, min(len(dataset), stride * count), stride):
        item = dataset[index]
        tiles = [item["rgb"], encode_rgb(item["normal"][None])[0] * item["mask"],
                 encode_rgb(item["normal_exact"][None])[0] * item["mask"],
                 item["mask"].expand(3, -1, -1), item["detail_mask"].expand(3, -1, -1)]
        rows.append(torch.cat(tiles, dim=2))
    grid = torch.cat(rows, dim=1).permute(1, 2, 0)
    return to_uint8(grid.numpy())


def stereo_error(dataset: FaceNormalDataset) -> pd.Series:
    """How far a lab split's photometric-stereo ground truth ("normal") is from the renderer's
    exact normals, over each capture's mask: the metrics table row (mean +- std in degrees, %
    of pixels under 20/25/30 degrees)."""
    if dataset.role != "lab":
        raise ValueError("stereo_error needs a lab split (lab_train or lab_test)")
    items = [dataset[i] for i in range(0, len(dataset), dataset.views)]
    stack = lambda key: torch.stack([item[key] for item in items])
    return evaluate_set(stack("normal"), stack("normal_exact"), stack("mask"), name="photometric stereo")
