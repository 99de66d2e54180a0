"""Our analogues of the paper's figures (3, 4, 6-11), each a matplotlib Figure.

    fig = figure_error_maps(estimator, items_at(lab_test, range(4)), preset="ci")
    save_figure(fig, "results/figures/ci/fig6_error_maps.png")

Items are dataset items (hffne_lib.data.FaceNormalDataset): dicts of unbatched tensors with
"gray" 1 x H x W in [0, 1] and, where the split has them, "rgb" 3 x H x W, "normal" 3 x H x W
(ground truth), "mask" 1 x H x W, "albedo" 1 or 3 x H x W, "light", "identity", "pose".
Normals follow hffne_lib.conventions and are shown in its RGB encoding; angles are degrees.
Every figure's title names the preset, says when the VGG19 inside the estimator was a random
stand-in (``estimator.provenance["vgg_weights"]``) and where the faces come from (the items'
DATA_KEY, which ``items_at`` and ``load_real_faces`` set). Figs. 3 and 6 add a column of the exemplar
fitted to each image (hffne_lib.fitting, beyond the paper) when the estimator has ``fitting``
settings; an estimator without refiner (a coarse checkpoint and ``fitting``) is drawn with its fitted
exemplar in place of the refined normals. The paper's Fig. 5 (its normals beside other methods' on
300-W photos) has no analogue: neither 300-W nor the other methods' outputs or models can be had
offline, and the synthetic wild split has no other methods to compare with.

The panel builders (``normal_panel``, ``error_panel``, ``shading_panel``, ``relit_panel``...)
return H x W x 3 arrays and are shared with hffne_lib.browse.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import matplotlib
import numpy as np
import pandas as pd
import torch
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from torch.utils.data import Dataset

from .conventions import apply_mask, rgb_to_gray, shade_lambertian, to_uint8_image
from .data import CROP_SCALE, LIGHT_FIELDS, face_mask, load_image
from .data.images import image_files
from .evaluate import FITTED, evaluate
from .metrics import angular_error
from .pipeline import NO_REFINER_VGG, NormalEstimator
from .predict import face_crops
from .rendering import fit_sh, light_direction, relight, sh_shading
from .train import PERCEPTUAL_LOSS_VGG
from .vgg import RANDOM_SOURCE

Item = Mapping[str, Any]

#: Top of the error colour scale (degrees); larger errors saturate.
ERROR_MAX_DEG = 60.0
ERROR_CMAP = "inferno"
#: Label of the error colour bar, which is open above ERROR_MAX_DEG.
ERROR_COLORBAR_LABEL = f"angular error (deg), clipped at {ERROR_MAX_DEG:g}"

#: Light directions (azimuth, elevation in degrees, see rendering.light_direction) of figs. 4 and 7.
DEFAULT_LIGHTS: tuple[tuple[float, float], ...] = ((-60.0, 10.0), (-30.0, 30.0), (0.0, 0.0), (30.0, 30.0), (60.0, 10.0))

#: The light of single shading panels (figs. 10, real faces, the browser's default).
FRONT_LEFT_LIGHT = (-30.0, 20.0)

#: Ambient term of relit panels, so the side away from the light is not black.
RELIGHT_AMBIENT = 0.15

#: Shading floor when albedo is estimated as image / shading (keeps shadows from blowing up).
SHADING_FLOOR = 0.05

#: Quantile (over the face) of an estimated albedo shown as white: an estimate is relative, about
#: 1 on average, so it is scaled for display.
ALBEDO_DISPLAY_QUANTILE = 0.99
DATASET_ALBEDO = "dataset albedo"
ESTIMATED_ALBEDO = (f"albedo estimated as image / fitted SH shading, scaled to 1 at its "
                    f"{ALBEDO_DISPLAY_QUANTILE * 100:.0f}th percentile over the face")

#: Environment variable naming the real-faces folder when notebook 04's ``real_faces_dir`` is None.
REAL_FACES_ENV = "HFFNE_REAL_FACES"

#: Item key naming where the item's face comes from (``items_at``, ``load_real_faces``); titles show it.
DATA_KEY = "data"

#: The paper's data set each role of the synthetic benchmark stands in for.
ROLE_STANDS_FOR = {"lab": "Photoface", "wild": "FFHQ/CelebA/300-W", "scans": "Florence"}

#: What the paper's refiner architectures do (Fig. 9's title).
ARCHITECTURE_NOTES = {"A1": "exemplar + image", "A2": "feature concat", "A3": "modulation"}

#: Side of one panel in inches.
PANEL_INCHES = 1.7


# ----------------------------------------------------------------------------- provenance
def vgg_note(estimators: Iterable[NormalEstimator]) -> str:
    """"VGG19: ..." for a figure's title, from the estimators' provenance "vgg_weights": RANDOM
    STAND-IN when any VGG19 (a refiner's, or an A1 refiner's training loss's) was one, else each
    kind of source once (``vgg_source_note``). ValueError without estimators."""
    sources = [e.provenance.get("vgg_weights", "unknown") for e in estimators]
    if not sources:
        raise ValueError("vgg_note needs at least one estimator")
    if any(RANDOM_SOURCE in s for s in sources):
        return "VGG19: RANDOM STAND-IN (no ImageNet weights), not the paper's VGG19"
    return "VGG19: " + "; ".join(dict.fromkeys(map(vgg_source_note, sources)))


def vgg_source_note(source: str) -> str:
    """One provenance "vgg_weights" other than the random stand-in, in words: no refiner, an A1
    refiner (no VGG19 inside; its training loss's), unknown, else a weight file (ImageNet weights)."""
    if source == NO_REFINER_VGG:
        return source
    if source.startswith(PERCEPTUAL_LOSS_VGG):
        return f"none in the A1 refiner ({vgg_source_note(source[len(PERCEPTUAL_LOSS_VGG):])} in its training loss)"
    if source == "unknown":
        return "weights unknown"
    return "ImageNet weights"


def figure_title(what: str, preset: str, estimators: Iterable[NormalEstimator], data: str) -> str:
    """Three-line title: what the figure shows; the preset and the VGG19 note; where the faces come
    from (``data``, e.g. ``data_of(items)``)."""
    return f"{what}\npreset {preset} | {vgg_note(estimators)}\ndata: {data}"


def dataset_note(dataset: Dataset) -> str:
    """Where a dataset's faces come from: "synthetic benchmark, wild_test (FFHQ/CelebA/300-W's role)",
    "Photoface, lab_test" (hffne_lib.data.prepare_photoface's data), or "unnamed data set (<type>)"
    for one that is not a FaceNormalDataset. The split is the manifest's whose shards it reads."""
    manifest = getattr(dataset, "manifest", None)
    if manifest is None:
        return f"unnamed data set ({type(dataset).__name__})"
    split = next((name for name, entry in manifest["splits"].items()
                  if [dataset.root / shard["file"] for shard in entry["shards"]] == dataset.files), dataset.role)
    if manifest["settings"].get("source") == "photoface":
        return f"Photoface, {split}"
    return f"synthetic benchmark, {split} ({ROLE_STANDS_FOR[dataset.role]}'s role)"


def data_of(items: Sequence[Item]) -> str:
    """Where the items' faces come from: their DATA_KEY entries, each once ("unnamed items" for
    items without one)."""
    return "; ".join(dict.fromkeys(str(item.get(DATA_KEY, "unnamed items")) for item in items))


# ----------------------------------------------------------------------------- predictions
@dataclass
class StageNormals:
    """Each stage's normals for a batch of items (``predict_stages``' result; a photo's faces are
    hffne_lib.predict.Prediction), B x 3 x H x W, zero outside the items' masks; ``refined``: None
    for an estimator without refiner; ``fitted``: the exemplars fitted to the images (beyond the
    paper), or None."""

    coarse: torch.Tensor
    refined: torch.Tensor | None = None
    fitted: torch.Tensor | None = None

    def stages(self) -> dict[str, torch.Tensor]:
        """Stage name ("exemplar"[, "refined"][, "fitted"]) -> its B x 3 x H x W normals, in display order."""
        stages = {"exemplar": self.coarse, "refined": self.refined, "fitted": self.fitted}
        return {stage: normals for stage, normals in stages.items() if normals is not None}

    def output(self) -> tuple[str, torch.Tensor]:
        """The estimator's result, (stage name, B x 3 x H x W normals): the refined normals, else
        (no refiner) the fitted exemplar, else the exemplar."""
        stages = self.stages()
        stage = next(stage for stage in ("refined", "fitted", "exemplar") if stage in stages)
        return stage, stages[stage]


def stack(items: Sequence[Item], key: str) -> torch.Tensor:
    """One key of several items as a batch: C x H x W each -> B x C x H x W (float)."""
    missing = [i for i, item in enumerate(items) if key not in item]
    if missing:
        raise KeyError(f"item {missing[0]} has no {key!r}; it has {sorted(items[missing[0]])}")
    return torch.stack([torch.as_tensor(item[key]) for item in items]).float()


def item_mask(item: Item) -> torch.Tensor:
    """The item's "mask", 1 x H x W bool; everything when it has none (the face region of a crop
    is hffne_lib.data.face_mask, which ``load_real_faces`` puts in its items)."""
    if "mask" in item:
        return torch.as_tensor(item["mask"]).bool()
    return torch.ones_like(torch.as_tensor(item["gray"]), dtype=torch.bool)


def check_items(estimator: NormalEstimator, items: Sequence[Item]) -> None:
    """ValueError when there are no items, or an item's size differs from the estimator's
    provenance "resolution" (where known)."""
    if not items:
        raise ValueError("no items to draw: pass at least one (e.g. figures.items_at(dataset, indices))")
    size = estimator.provenance.get("resolution")
    if size is None:
        return
    for index, item in enumerate(items):
        height, width = torch.as_tensor(item["gray"]).shape[-2:]
        if (height, width) != (size, size):
            raise ValueError(f"item {index} is {height} x {width} px but the estimator works at {size} px: "
                             f"crop or resize the faces to {size} px (load_real_faces(folder, {size}) does)")


def predict_stages(estimator: NormalEstimator, items: Sequence[Item], fit: bool = False) -> StageNormals:
    """Coarse exemplar and refined normals (none without refiner) of the items, masked to their
    faces; with ``estimator.fitting`` set, also the exemplars fitted to the images inside those
    masks when ``fit`` asks or there is no refiner (the fit is then the estimator's result).
    ValueError as ``check_items``."""
    check_items(estimator, items)
    gray = stack(items, "gray")
    masks = torch.stack([item_mask(item) for item in items])
    coarse = estimator.coarse(gray)
    refined = fitted = None
    if estimator.refiner is not None:
        refined = apply_mask(estimator.refine(gray, coarse).cpu(), masks)
    if estimator.fitting is not None and (fit or estimator.refiner is None):
        fitted = apply_mask(estimator.fit(gray, coarse, masks.float()).cpu(), masks)
    return StageNormals(apply_mask(coarse.cpu(), masks), refined, fitted)


def stages_note(estimator: NormalEstimator) -> str:
    """What figs. 3 and 6 compare: "coarse exemplar vs refined normals", or "coarse exemplar @ N it,
    no refiner" for an estimator without one (N: its provenance "coarse_iteration")."""
    if estimator.refiner is None:
        return f"coarse exemplar @ {estimator.provenance.get('coarse_iteration', '?')} it, no refiner"
    return "coarse exemplar vs refined normals"


def fitting_note(estimator: NormalEstimator) -> str:
    """" + exemplar fitted to the image in N steps (beyond the paper)" for the titles of figures that
    show the fit; "" when ``estimator.fitting`` is None."""
    if estimator.fitting is None:
        return ""
    return f" + exemplar fitted to the image in {estimator.fitting.steps} steps (beyond the paper)"


#: Panel title of the fitted normals.
FITTED_TITLE = "fitted\n(beyond the paper)"
#: Panel titles of the stages whose name alone would not say enough.
STAGE_TITLES = {"exemplar": "coarse exemplar", "fitted": FITTED_TITLE}


def stage_title(stage: str) -> str:
    """Panel title of a stage's normals (or any panel name): STAGE_TITLES', else the name itself."""
    return STAGE_TITLES.get(stage, stage)


# ----------------------------------------------------------------------------- panels
def image_panel(image: torch.Tensor) -> np.ndarray:
    """A grey or colour image 1 or 3 x H x W -> H x W x 3 float clipped to [0, 1]."""
    return torch.as_tensor(image).float().expand(3, -1, -1).permute(1, 2, 0).clamp(0.0, 1.0).numpy()


def photo(item: Item) -> torch.Tensor:
    """The item's photo: "rgb" (3 x H x W) when it has one, else "gray" (1 x H x W)."""
    return torch.as_tensor(item["rgb"] if "rgb" in item else item["gray"]).float()


def photo_panel(item: Item) -> np.ndarray:
    """The input photo as an H x W x 3 float panel."""
    return image_panel(photo(item))


def truth_panel(item: Item) -> np.ndarray:
    """The item's ground-truth "normal", masked to its face, as an H x W x 3 uint8 panel."""
    return normal_panel(apply_mask(truth_of(item)[None], item_mask(item))[0])


def truth_of(item: Item) -> torch.Tensor:
    """The item's ground-truth normals, 3 x H x W."""
    if "normal" not in item:
        raise KeyError(f"item has no ground truth 'normal'; it has {sorted(item)}")
    return torch.as_tensor(item["normal"]).float()


def normal_panel(normals: torch.Tensor) -> np.ndarray:
    """A normal map 3 x H x W -> H x W x 3 uint8 in the conventions' RGB encoding."""
    return to_uint8_image(normals)


def angular_error_map(pred: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-pixel angular error in degrees, NaN outside the mask: 3 x H x W, 3 x H x W, 1 x H x W -> H x W."""
    error = angular_error(pred[None], truth[None])[0]
    return torch.where(mask[0].bool(), error, torch.full_like(error, float("nan")))


def error_panel(error: torch.Tensor) -> np.ndarray:
    """An error map H x W (degrees, NaN = no face) -> H x W x 3 float, ERROR_CMAP over
    [0, ERROR_MAX_DEG], white where NaN."""
    colours = matplotlib.colormaps[ERROR_CMAP](np.clip(error.numpy() / ERROR_MAX_DEG, 0.0, 1.0))[..., :3]
    colours[np.isnan(error.numpy())] = 1.0
    return colours


def shading_panel(normals: torch.Tensor, mask: torch.Tensor, azimuth: float, elevation: float) -> np.ndarray:
    """Lambertian shading max(0, n . l) of a white face under light (azimuth, elevation) in degrees:
    3 x H x W, 1 x H x W -> H x W x 3 float in [0, 1] (zero outside the mask)."""
    return image_panel(shade_lambertian(normals[None], light_direction(azimuth, elevation))[0] * mask)


def relit_panel(albedo: torch.Tensor, normals: torch.Tensor, mask: torch.Tensor, azimuth: float,
                elevation: float, ambient: float = RELIGHT_AMBIENT) -> np.ndarray:
    """Lambertian relighting albedo * (ambient + max(0, n . l)), clipped to [0, 1]:
    albedo 1 or 3 x H x W, normals 3 x H x W, mask 1 x H x W -> H x W x 3 float."""
    return image_panel(relight(albedo[None].float(), normals[None], light_direction(azimuth, elevation), ambient)[0] * mask)


def albedo_of(item: Item, normals: torch.Tensor) -> tuple[torch.Tensor, str]:
    """The item's albedo (C x H x W) and where it came from (DATASET_ALBEDO or ESTIMATED_ALBEDO):
    the dataset's "albedo" when the split has one, else estimated as image / shading, the shading
    being a second-order SH light fitted (least squares) to the grey image and ``normals``
    (3 x H x W). The fitted light absorbs the mean grey albedo, so an estimate is relative (about 1
    for an average face); for display it is scaled to 1 at its ALBEDO_DISPLAY_QUANTILE over the face."""
    if "albedo" in item:
        return torch.as_tensor(item["albedo"]).float(), DATASET_ALBEDO
    mask = item_mask(item)
    gray = torch.as_tensor(item["gray"]).float()[None]
    shading = sh_shading(normals[None], fit_sh(gray, normals[None], mask[None]))[0]
    estimate = photo(item) / shading.clamp_min(SHADING_FLOOR) * mask
    top = torch.quantile(estimate[mask.expand_as(estimate)], ALBEDO_DISPLAY_QUANTILE)
    return estimate / top.clamp_min(torch.finfo(estimate.dtype).tiny), ESTIMATED_ALBEDO


def albedo_title(source: str) -> str:
    """Panel title of an albedo from ``albedo_of``: "albedo", or "albedo (estimated, scaled)"."""
    return "albedo" if source == DATASET_ALBEDO else "albedo (estimated, scaled)"


def light_label(azimuth: float, elevation: float) -> str:
    """Panel title of a light direction, e.g. "az -30, el 20"."""
    return f"az {azimuth:g}, el {elevation:g}"


# ----------------------------------------------------------------------------- layout
class PanelGrid:
    """A rows x cols grid of image panels (ticks hidden, row labels on the left)."""

    def __init__(self, rows: int, cols: int, title: str):
        self.figure = Figure(figsize=(PANEL_INCHES * cols + 0.6, PANEL_INCHES * rows + 0.8), layout="constrained")
        self.axes = self.figure.subplots(rows, cols, squeeze=False)
        self.figure.suptitle(title, fontsize=9)
        for ax in self.axes.flat:
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)

    def show(self, row: int, col: int, image: np.ndarray, title: str = "") -> None:
        """Draw one H x W x 3 panel (uint8 or float in [0, 1])."""
        ax = self.axes[row, col]
        ax.imshow(image, interpolation="nearest")
        ax.set_title(title, fontsize=7)

    def label_rows(self, labels: Sequence[str]) -> None:
        """Row labels to the left of the first column."""
        for ax, label in zip(self.axes[:, 0], labels):
            ax.set_ylabel(label, fontsize=7)

    def error_colorbar(self) -> None:
        """One colour bar for every error panel (degrees, ERROR_COLORBAR_LABEL), open at the top:
        errors above ERROR_MAX_DEG show in its top colour."""
        mappable = ScalarMappable(Normalize(0.0, ERROR_MAX_DEG), ERROR_CMAP)
        self.figure.colorbar(mappable, ax=self.axes, shrink=0.6, extend="max", label=ERROR_COLORBAR_LABEL)


def item_label(item: Item, index: int) -> str:
    """Row label of an item: its name, or identity and yaw when the dataset gives them."""
    if "name" in item:
        return str(item["name"])
    parts = [f"#{index}"]
    if "identity" in item:
        parts.append(f"id {int(item['identity'])}")
    if "pose" in item:
        parts.append(f"yaw {float(item['pose'][0]):+.0f}")
    return " ".join(parts)


def item_labels(items: Sequence[Item]) -> list[str]:
    """Row labels of several items (see ``item_label``)."""
    return [item_label(item, i) for i, item in enumerate(items)]


def show_stages(grid: PanelGrid, row: int, item: Item, pred: StageNormals) -> int:
    """A row's first columns: the input, then each stage's normals (``pred`` row ``row``, in
    ``StageNormals.stages`` order); returns the next free column."""
    grid.show(row, 0, photo_panel(item), "input")
    for col, (stage, normals) in enumerate(pred.stages().items(), start=1):
        grid.show(row, col, normal_panel(normals[row]), stage_title(stage))
    return 1 + len(pred.stages())


def _error_title(stage: str, error: torch.Tensor) -> str:
    return f"{stage} err\nmean {float(error.nanmean()):.1f} deg"


def _check_estimators(estimators: Mapping[str, NormalEstimator], figure: str) -> None:
    if not estimators:
        raise ValueError(f"{figure} needs at least one estimator: pass {{label: NormalEstimator}}")


# ----------------------------------------------------------------------------- figures
def figure_exemplar_vs_refined(estimator: NormalEstimator, items: Sequence[Item], preset: str) -> Figure:
    """Fig. 3: per item (row) the input, the coarse exemplar, the refined normals (when the
    estimator has a refiner), the fitted normals (when ``estimator.fitting`` is set) and, when every
    item has one, the ground truth. 3 to 5 panels per row."""
    pred = predict_stages(estimator, items, fit=True)
    with_truth = all("normal" in item for item in items)
    grid = PanelGrid(len(items), 1 + len(pred.stages()) + with_truth,
                     figure_title(f"Fig. 3 analogue: {stages_note(estimator)}{fitting_note(estimator)}",
                                  preset, [estimator], data_of(items)))
    for row, item in enumerate(items):
        col = show_stages(grid, row, item, pred)
        if with_truth:
            grid.show(row, col, truth_panel(item), "ground truth")
    grid.label_rows(item_labels(items))
    return grid.figure


def figure_shading(estimator: NormalEstimator, items: Sequence[Item], preset: str,
                   lights: Sequence[tuple[float, float]] = DEFAULT_LIGHTS) -> Figure:
    """Fig. 4: one row per item and stage, the exemplar's and the refined normals' (the fitted
    exemplar's without refiner) Lambertian shading (white albedo) under each light (azimuth,
    elevation in degrees); columns input, normals, one per light. 2 * len(items) rows of
    2 + len(lights) panels; with a refiner, the fitted exemplar (beyond the paper) is in figs. 3
    and 6 only."""
    stages = predict_stages(estimator, items).stages()
    grid = PanelGrid(len(stages) * len(items), 2 + len(lights),
                     figure_title("Fig. 4 analogue: normals and Lambertian shading under several lights",
                                  preset, [estimator], data_of(items)))
    labels = []
    for i, item in enumerate(items):
        mask = item_mask(item)
        for offset, (stage, batch) in enumerate(stages.items()):
            row, normals = len(stages) * i + offset, batch[i]
            grid.show(row, 0, photo_panel(item), "input")
            grid.show(row, 1, normal_panel(normals), stage_title(stage))
            for col, (azimuth, elevation) in enumerate(lights, start=2):
                grid.show(row, col, shading_panel(normals, mask, azimuth, elevation), light_label(azimuth, elevation))
            labels.append(f"{item_label(item, i)}\n{stage}")
    grid.label_rows(labels)
    return grid.figure


def figure_error_maps(estimator: NormalEstimator, items: Sequence[Item], preset: str) -> Figure:
    """Fig. 6 (lab split): per item the input, the ground truth, then each stage's normals and
    their angular error: the exemplar, the refined normals (with a refiner), the fitted normals
    (when ``estimator.fitting`` is set); 4 to 8 panels a row, one shared colour bar in degrees."""
    stages = predict_stages(estimator, items, fit=True).stages()
    grid = PanelGrid(len(items), 2 + 2 * len(stages),
                     figure_title(f"Fig. 6 analogue: angular error maps, {stages_note(estimator)}"
                                  f"{fitting_note(estimator)}", preset, [estimator], data_of(items)))
    for row, item in enumerate(items):
        mask = item_mask(item)
        truth = truth_of(item)
        grid.show(row, 0, photo_panel(item), "input")
        grid.show(row, 1, truth_panel(item), "ground truth")
        for col, (stage, normals) in enumerate(stages.items()):
            error = angular_error_map(normals[row], truth, mask)
            grid.show(row, 2 + 2 * col, normal_panel(normals[row]), stage_title(stage))
            grid.show(row, 3 + 2 * col, error_panel(error), _error_title(stage, error))
    grid.label_rows(item_labels(items))
    grid.error_colorbar()
    return grid.figure


def figure_relighting(estimator: NormalEstimator, items: Sequence[Item], preset: str,
                      lights: Sequence[tuple[float, float]] = DEFAULT_LIGHTS,
                      ambient: float = RELIGHT_AMBIENT) -> Figure:
    """Fig. 7: Lambertian relighting albedo * (ambient + max(0, n . l)) with the estimator's result
    (``StageNormals.output``: the refined normals); per item the input, the albedo (the dataset's,
    else image / fitted SH shading, scaled; the title says which), the normals and one relit image
    per light. 3 + len(lights) panels a row."""
    stage, normals = predict_stages(estimator, items).output()
    albedos = [albedo_of(item, normals[i]) for i, item in enumerate(items)]
    sources = sorted({source for _, source in albedos})
    grid = PanelGrid(len(items), 3 + len(lights),
                     figure_title(f"Fig. 7 analogue: Lambertian relighting, ambient {ambient:g}; {', '.join(sources)}",
                                  preset, [estimator], data_of(items)))
    for row, (item, (albedo, source)) in enumerate(zip(items, albedos)):
        mask = item_mask(item)
        grid.show(row, 0, photo_panel(item), "input")
        grid.show(row, 1, image_panel(albedo * mask), albedo_title(source))
        grid.show(row, 2, normal_panel(normals[row]), stage_title(stage))
        for col, (azimuth, elevation) in enumerate(lights, start=3):
            grid.show(row, col, relit_panel(albedo, normals[row], mask, azimuth, elevation, ambient),
                      light_label(azimuth, elevation))
    grid.label_rows(item_labels(items))
    return grid.figure


def figure_checkpoints(estimators: Mapping[str, NormalEstimator], items: Sequence[Item], preset: str) -> Figure:
    """Fig. 8: exemplars from early, middle and final coarse checkpoints and the refined normals
    of the refiner trained on each. ``estimators``: row name (Iter1k, Iter50k, Ours-paired) ->
    estimator; per item the input, then (exemplar, result: ``StageNormals.output``) per estimator:
    1 + 2k panels a row."""
    _check_estimators(estimators, "figure_checkpoints")
    preds = {name: predict_stages(estimator, items) for name, estimator in estimators.items()}
    grid = PanelGrid(len(items), 1 + 2 * len(estimators),
                     figure_title("Fig. 8 analogue: exemplars from early / middle / final coarse checkpoints",
                                  preset, estimators.values(), data_of(items)))
    for row, item in enumerate(items):
        grid.show(row, 0, photo_panel(item), "input")
        for k, (name, pred) in enumerate(preds.items()):
            iteration = estimators[name].provenance.get("coarse_iteration", "?")
            stage, normals = pred.output()
            grid.show(row, 1 + 2 * k, normal_panel(pred.coarse[row]), f"{name}\nexemplar @ {iteration} it")
            grid.show(row, 2 + 2 * k, normal_panel(normals[row]), f"{name}\n{stage}")
    grid.label_rows(item_labels(items))
    return grid.figure


def figure_architectures(estimators: Mapping[str, NormalEstimator], items: Sequence[Item], preset: str) -> Figure:
    """Fig. 9: refiner architectures in the wild. ``estimators``: label (A1, A2, A3; the title says
    what each of these does) -> estimator, all on the same coarse checkpoint; per item the input,
    the first estimator's exemplar and each estimator's result (``StageNormals.output``): 2 + k
    panels a row."""
    _check_estimators(estimators, "figure_architectures")
    preds = {name: predict_stages(estimator, items) for name, estimator in estimators.items()}
    first = next(iter(preds.values()))
    labels = [f"{name} ({ARCHITECTURE_NOTES[name]})" if name in ARCHITECTURE_NOTES else name for name in estimators]
    grid = PanelGrid(len(items), 2 + len(estimators),
                     figure_title(f"Fig. 9 analogue: {', '.join(labels)}", preset, estimators.values(), data_of(items)))
    for row, item in enumerate(items):
        grid.show(row, 0, photo_panel(item), "input")
        grid.show(row, 1, normal_panel(first.coarse[row]), "coarse exemplar")
        for col, (name, pred) in enumerate(preds.items(), start=2):
            grid.show(row, col, normal_panel(pred.output()[1][row]), name)
    grid.label_rows(item_labels(items))
    return grid.figure


def figure_variety(estimator: NormalEstimator, items: Sequence[Item], preset: str,
                   light: tuple[float, float] = FRONT_LEFT_LIGHT) -> Figure:
    """Fig. 10: many faces side by side, in the order given (``variety_indices`` picks different
    identities from darkest to lightest skin tone); rows input, the estimator's result
    (``StageNormals.output``), its shading under ``light``; one column per item: 3 * len(items) panels."""
    stage, normals = predict_stages(estimator, items).output()
    grid = PanelGrid(3, len(items), figure_title(
        f"Fig. 10 analogue: {len(items)} faces, each with its {stage} normals and their shading",
        preset, [estimator], data_of(items)))
    for col, item in enumerate(items):
        grid.show(0, col, photo_panel(item), item_label(item, col))
        grid.show(1, col, normal_panel(normals[col]))
        grid.show(2, col, shading_panel(normals[col], item_mask(item), *light))
    grid.label_rows(["input", stage_title(stage), f"shading {light_label(*light)}"])
    return grid.figure


def figure_failures(estimator: NormalEstimator, worst: Sequence[Item], extreme_light: Sequence[Item],
                    preset: str) -> Figure:
    """Fig. 11: failure cases, the items with the largest error (``worst_indices``) then the items
    under the most grazing light; per row the input, the ground truth, the estimator's result
    (``StageNormals.output``) and its error (4 panels), one shared colour bar in degrees."""
    items = [*worst, *extreme_light]
    stage, normals = predict_stages(estimator, items).output()
    grid = PanelGrid(len(items), 4, figure_title("Fig. 11 analogue: failure cases (largest error, extreme light)",
                                                 preset, [estimator], data_of(items)))
    labels = []
    for row, item in enumerate(items):
        mask = item_mask(item)
        error = angular_error_map(normals[row], truth_of(item), mask)
        grid.show(row, 0, photo_panel(item), "input")
        grid.show(row, 1, truth_panel(item), "ground truth")
        grid.show(row, 2, normal_panel(normals[row]), stage_title(stage))
        grid.show(row, 3, error_panel(error), _error_title(stage, error))
        kind = "worst" if row < len(worst) else f"light {light_angle(item):.0f} deg off axis"
        labels.append(f"{item_label(item, row)}\n{kind}")
    grid.label_rows(labels)
    grid.error_colorbar()
    return grid.figure


def figure_real_faces(estimator: NormalEstimator, items: Sequence[Item], preset: str,
                      light: tuple[float, float] = FRONT_LEFT_LIGHT) -> Figure:
    """Real photos (no ground truth): per face the input, the exemplar, the estimator's result
    (``StageNormals.output``) and its shading under ``light``, inside the items' masks: 4 panels a
    row (3 for an estimator with neither refiner nor fitting). Items from ``load_real_faces``. The
    result is the refined normals, never fitted ones, as ``hffne predict`` without --fit-steps
    writes them; without refiner, the fitted exemplar."""
    pred = predict_stages(estimator, items)
    stage, normals = pred.output()
    grid = PanelGrid(len(items), 2 + len(pred.stages()),
                     figure_title("Real faces (no ground truth)", preset, [estimator], data_of(items)))
    for row, item in enumerate(items):
        col = show_stages(grid, row, item, pred)
        grid.show(row, col, shading_panel(normals[row], item_mask(item), *light), f"shading {light_label(*light)}")
    grid.label_rows(item_labels(items))
    return grid.figure


def figure_losses(log: pd.DataFrame, title: str, columns: Sequence[str] | None = None) -> Figure:
    """Training curves: one panel per column of ``log`` (train.read_log's frame, indexed by
    iteration; default every column but "seconds") against the iteration, on a log scale where the
    column is all positive. KeyError naming a column the log lacks."""
    columns = [c for c in log.columns if c != "seconds"] if columns is None else list(columns)
    missing = [c for c in columns if c not in log.columns]
    if missing:
        raise KeyError(f"the loss log has no column {missing[0]!r}; it has {list(log.columns)}")
    if not columns:
        raise ValueError("figure_losses needs at least one column to draw")
    figure = Figure(figsize=(4 * len(columns), 3), layout="constrained")
    figure.suptitle(title, fontsize=9)
    for ax, column in zip(figure.subplots(1, len(columns), squeeze=False)[0], columns):
        ax.plot(log.index, log[column])
        ax.set_title(column, fontsize=8)
        ax.set_xlabel("iteration", fontsize=7)
        if (log[column] > 0).all():
            ax.set_yscale("log")
    return figure


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 150) -> Path:
    """Write ``fig`` as a PNG (parent folders made); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    return path


# ----------------------------------------------------------------------------- choosing items
def items_at(dataset: Dataset, indices: Iterable[int]) -> list[dict[str, Any]]:
    """The dataset's items at ``indices``, each with DATA_KEY saying where it comes from (``dataset_note``)."""
    note = dataset_note(dataset)
    return [{**dataset[int(i)], DATA_KEY: note} for i in indices]


def variety_indices(dataset: Dataset, count: int) -> list[int]:
    """Indices of ``count`` items of different identities spread over skin tone: the first item
    of each identity, sorted by mean albedo (the grey image where there is none) over the face,
    then taken at even steps from darkest to lightest."""
    first: dict[int, tuple[float, int]] = {}
    for index in range(len(dataset)):
        item = dataset[index]
        identity = int(item.get("identity", index))
        if identity not in first:
            tone = torch.as_tensor(item.get("albedo", item["gray"])).float().mean(0, keepdim=True)
            first[identity] = (float(tone[item_mask(item)].mean()), index)
    ranked = [index for _, index in sorted(first.values())]
    if len(ranked) <= count:
        return ranked
    return [ranked[step] for step in np.linspace(0, len(ranked) - 1, count).round().astype(int)]


def worst_indices(estimator: NormalEstimator, dataset: Dataset, count: int) -> list[int]:
    """Indices of the ``count`` items with the largest mean angular error over the face of the
    estimator's result (``StageNormals.output``): the refined normals, measured without the
    estimator's fitting (which would only cost time here); without refiner, the fitted exemplar."""
    if estimator.refiner is None:
        measured, stage = estimator, FITTED if estimator.fitting is not None else "coarse"
    else:   # shares the nets
        measured, stage = NormalEstimator(estimator.coarse_net, estimator.refiner, estimator.provenance), "refined"
    table = evaluate(measured, dataset, progress=False).per_image
    rows = table[(table["stage"] == stage) & (table["region"] == "face")]
    return [int(i) for i in rows.sort_values("mean", ascending=False)["image"].head(count)]


def light_angle(item: Item) -> float:
    """Angle (degrees) between an item's main light and the view axis, from its "light" vector
    (hffne_lib.data LIGHT_FIELDS: the directional light, else the first-order SH direction)."""
    if "light" not in item:
        raise KeyError("item has no 'light' vector: extreme-light selection needs a wild or scans split")
    light = dict(zip(LIGHT_FIELDS, torch.as_tensor(item["light"]).tolist()))
    if light["strength"] > 0:
        x, y, z = light["dir_x"], light["dir_y"], light["dir_z"]
    else:  # SH order 1, y, z, x, ...
        x, y, z = light["sh_3"], light["sh_1"], light["sh_2"]
    return math.degrees(math.atan2(math.hypot(x, y), z))


def extreme_light_indices(dataset: Dataset, count: int) -> list[int]:
    """Indices of the ``count`` items whose light is furthest from the view axis."""
    angles = pd.Series([light_angle(dataset[i]) for i in range(len(dataset))])
    return [int(i) for i in angles.sort_values(ascending=False).index[:count]]


# ----------------------------------------------------------------------------- real photos
def real_faces_folder(folder: str | os.PathLike | None = None) -> str | None:
    """The real-faces folder notebook 04 uses: ``folder``, else $HFFNE_REAL_FACES when set, else None."""
    return str(folder) if folder else os.environ.get(REAL_FACES_ENV) or None


def load_real_faces(folder: str | os.PathLike, size: int, limit: int | None = None) -> list[dict[str, Any]]:
    """Real photos of ``folder``, or of its ``images/`` when it has none itself (the developers'
    real_faces folder: ``images/`` beside ``official_hffne_normals/``): any hffne_lib.data image
    file, sorted by name, the first ``limit`` usable ones. The largest face of each is found and
    cropped to ``size`` px as ``hffne predict`` does (hffne_lib.predict.face_crops) -> items with
    "rgb" 3 x S x S, "gray" 1 x S x S in [0, 1], "mask" 1 x S x S bool (the face ellipse,
    hffne_lib.data.face_mask), "name" and DATA_KEY ("your photos, <folder>"). A photo that
    cannot be read or holds no face is skipped with one printed line; none left raises ValueError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"real-faces folder {folder} does not exist")
    paths = image_files(folder)
    if not paths and (folder / "images").is_dir():
        folder = folder / "images"
        paths = image_files(folder)
    if not paths:
        raise FileNotFoundError(f"no images in {folder}: name a folder of photos (or one holding images/)")
    mask = torch.from_numpy(face_mask(size, CROP_SCALE))[None]
    items = []
    for path in paths:
        try:   # ValueError, OSError: unreadable (load_image); NoFaceError (a ValueError): no face
            [(_, crop, _)] = face_crops(load_image(path), size, crop_scale=CROP_SCALE)
        except (ValueError, OSError) as err:
            print(f"real faces: skipped {path.name} ({err})")
            continue
        rgb = torch.from_numpy(crop).permute(2, 0, 1).contiguous()
        items.append({"rgb": rgb, "gray": rgb_to_gray(rgb[None])[0], "mask": mask, "name": path.stem,
                      DATA_KEY: f"your photos, {folder}"})
        if len(items) == limit:
            break
    if not items:
        raise ValueError(f"no photo left in {folder}: all {len(paths)} unreadable or without a face (lines above)")
    return items
