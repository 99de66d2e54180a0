"""Our analogues of the paper's figures (3, 4, 6-11), each a matplotlib Figure.

    fig = figure_error_maps(estimator, [lab_test[i] for i in range(4)], preset="ci")
    save_figure(fig, "results/figures/ci/fig6_error_maps.png")

Items are dataset items (hffne_lib.data.FaceNormalDataset): dicts of unbatched tensors with
"gray" 1 x H x W in [0, 1] and, where the split has them, "rgb" 3 x H x W, "normal" 3 x H x W
(ground truth), "mask" 1 x H x W, "albedo" 1 or 3 x H x W, "light", "identity", "pose".
Normals follow hffne_lib.conventions and are shown in its RGB encoding; angles are degrees.
Every figure's title names the preset and says when the VGG19 inside the estimator was a random
stand-in (``estimator.provenance["vgg_weights"]``). Figs. 3 and 6 add a column of the exemplar fitted
to each image (hffne_lib.fitting, beyond the paper) when the estimator has ``fitting`` settings.

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
from .data import CROP_SCALE, LIGHT_FIELDS, load_image
from .data.images import IMAGE_SUFFIXES
from .evaluate import evaluate
from .metrics import angular_error
from .pipeline import NormalEstimator
from .predict import face_crops, face_mask
from .rendering import fit_sh, light_direction, relight, sh_shading
from .vgg import RANDOM_SOURCE

Item = Mapping[str, Any]

#: Top of the error colour scale (degrees); larger errors saturate.
ERROR_MAX_DEG = 60.0
ERROR_CMAP = "inferno"

#: Light directions (azimuth, elevation in degrees, see rendering.light_direction) of figs. 4 and 7.
DEFAULT_LIGHTS: tuple[tuple[float, float], ...] = ((-60.0, 10.0), (-30.0, 30.0), (0.0, 0.0), (30.0, 30.0), (60.0, 10.0))

#: The light of single shading panels (figs. 10, real faces, the browser's default).
FRONT_LEFT_LIGHT = (-30.0, 20.0)

#: Ambient term of relit panels, so the side away from the light is not black.
RELIGHT_AMBIENT = 0.15

#: Shading floor when albedo is estimated as image / shading (keeps shadows from blowing up).
SHADING_FLOOR = 0.05

#: Side of one panel in inches.
PANEL_INCHES = 1.7


# ----------------------------------------------------------------------------- provenance
def vgg_note(estimators: Iterable[NormalEstimator]) -> str:
    """"VGG19: ..." for a figure's title: RANDOM STAND-IN when any estimator's VGG19 was one.
    An A1 refiner has no VGG19 (its provenance says "not used ...", see train.install_vgg)."""
    sources = [e.provenance.get("vgg_weights", "unknown") for e in estimators]
    if any(RANDOM_SOURCE in s for s in sources):
        return "VGG19: RANDOM STAND-IN (no ImageNet weights), not the paper's encoder"
    used = [s for s in sources if not s.startswith("not used")]
    if not used:
        return "VGG19: none in the refiner (A1)"
    if "unknown" in used:
        return "VGG19: weights unknown"
    return "VGG19: ImageNet weights"


def figure_title(what: str, preset: str, estimators: Iterable[NormalEstimator]) -> str:
    """Two-line title: what the figure shows, then the preset and the VGG19 note."""
    return f"{what}\npreset {preset} | {vgg_note(estimators)}"


# ----------------------------------------------------------------------------- predictions
@dataclass
class StageNormals:
    """Each stage's normals for a batch of items (``predict_stages``' result; a photo's faces are
    hffne_lib.predict.Prediction), B x 3 x H x W, zero outside the items' masks; ``fitted``: the
    exemplars fitted to the images (beyond the paper), or None."""

    coarse: torch.Tensor
    refined: torch.Tensor
    fitted: torch.Tensor | None = None

    def stages(self) -> dict[str, torch.Tensor]:
        """Stage name ("exemplar", "refined"[, "fitted"]) -> its B x 3 x H x W normals, in display order."""
        stages = {"exemplar": self.coarse, "refined": self.refined}
        if self.fitted is not None:
            stages["fitted"] = self.fitted
        return stages


def stack(items: Sequence[Item], key: str) -> torch.Tensor:
    """One key of several items as a batch: C x H x W each -> B x C x H x W (float)."""
    missing = [i for i, item in enumerate(items) if key not in item]
    if missing:
        raise KeyError(f"item {missing[0]} has no {key!r}; it has {sorted(items[missing[0]])}")
    return torch.stack([torch.as_tensor(item[key]) for item in items]).float()


def item_mask(item: Item) -> torch.Tensor:
    """The item's "mask", 1 x H x W bool; everything when it has none (the face region of a crop
    is hffne_lib.predict.face_mask, which ``load_real_faces`` puts in its items)."""
    if "mask" in item:
        return torch.as_tensor(item["mask"]).bool()
    return torch.ones_like(torch.as_tensor(item["gray"]), dtype=torch.bool)


def predict_stages(estimator: NormalEstimator, items: Sequence[Item], fit: bool = False) -> StageNormals:
    """Coarse exemplar and refined normals of the items, masked to their faces; with ``fit`` and
    ``estimator.fitting`` set, also the exemplars fitted to the images inside those masks."""
    gray = stack(items, "gray")
    masks = torch.stack([item_mask(item) for item in items])
    coarse = estimator.coarse(gray)
    refined = estimator.refine(gray, coarse)
    fitted = None
    if fit and estimator.fitting is not None:
        fitted = apply_mask(estimator.fit(gray, coarse, masks.float()).cpu(), masks)
    return StageNormals(apply_mask(coarse.cpu(), masks), apply_mask(refined.cpu(), masks), fitted)


def fitting_note(estimator: NormalEstimator) -> str:
    """" + exemplar fitted to the image in N steps (beyond the paper)" for the titles of figures that
    show the fit; "" when ``estimator.fitting`` is None."""
    if estimator.fitting is None:
        return ""
    return f" + exemplar fitted to the image in {estimator.fitting.steps} steps (beyond the paper)"


#: Panel title of the fitted normals.
FITTED_TITLE = "fitted\n(beyond the paper)"


def stage_title(stage: str) -> str:
    """Panel title of a stage's normals: its name, the fitted one labelled beyond the paper."""
    return FITTED_TITLE if stage == "fitted" else stage


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
    """The item's albedo (C x H x W) and where it came from: the dataset's "albedo" when the
    split has one, else estimated as image / shading, the shading being a second-order SH light
    fitted (least squares) to the grey image and ``normals`` (3 x H x W). The fitted light
    absorbs the mean grey albedo, so an estimate is relative (about 1 for an average face)."""
    if "albedo" in item:
        return torch.as_tensor(item["albedo"]).float(), "dataset albedo"
    mask = item_mask(item)
    gray = torch.as_tensor(item["gray"]).float()[None]
    shading = sh_shading(normals[None], fit_sh(gray, normals[None], mask[None]))[0]
    return photo(item) / shading.clamp_min(SHADING_FLOOR) * mask, "albedo estimated as image / fitted SH shading"


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
        """One colour bar for every error panel (degrees)."""
        mappable = ScalarMappable(Normalize(0.0, ERROR_MAX_DEG), ERROR_CMAP)
        self.figure.colorbar(mappable, ax=self.axes, shrink=0.6, label="angular error (deg)")


def figure_columns(columns: Mapping[str, Sequence[np.ndarray]], title: str,
                   row_labels: Sequence[str] | None = None) -> Figure:
    """A grid with one column per entry of ``columns`` (name -> one H x W x 3 panel per row)."""
    names = list(columns)
    rows = len(columns[names[0]])
    grid = PanelGrid(rows, len(names), title)
    for col, name in enumerate(names):
        for row, image in enumerate(columns[name]):
            grid.show(row, col, image, name if row == 0 else "")
    if row_labels:
        grid.label_rows(row_labels)
    return grid.figure


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


def show_stages(grid: PanelGrid, row: int, item: Item, pred: StageNormals) -> None:
    """Columns 0-2 of a row: the input, the coarse exemplar and the refined normals (``pred`` row ``row``)."""
    grid.show(row, 0, photo_panel(item), "input")
    grid.show(row, 1, normal_panel(pred.coarse[row]), "coarse exemplar")
    grid.show(row, 2, normal_panel(pred.refined[row]), "refined")


def _error_title(stage: str, error: torch.Tensor) -> str:
    return f"{stage} err\nmean {float(error.nanmean()):.1f} deg"


# ----------------------------------------------------------------------------- figures
def figure_exemplar_vs_refined(estimator: NormalEstimator, items: Sequence[Item], preset: str) -> Figure:
    """Fig. 3: per item (row) the input, the coarse exemplar, the refined normals, the fitted
    normals when ``estimator.fitting`` is set and, when every item has one, the ground truth.
    3 to 5 panels per row."""
    pred = predict_stages(estimator, items, fit=True)
    with_fit = pred.fitted is not None
    with_truth = all("normal" in item for item in items)
    grid = PanelGrid(len(items), 3 + with_fit + with_truth,
                     figure_title("Fig. 3 analogue: coarse exemplar vs refined normals" + fitting_note(estimator),
                                  preset, [estimator]))
    for row, item in enumerate(items):
        show_stages(grid, row, item, pred)
        if with_fit:
            grid.show(row, 3, normal_panel(pred.fitted[row]), stage_title("fitted"))
        if with_truth:
            grid.show(row, 3 + with_fit, truth_panel(item), "ground truth")
    grid.label_rows(item_labels(items))
    return grid.figure


def figure_shading(estimator: NormalEstimator, items: Sequence[Item], preset: str,
                   lights: Sequence[tuple[float, float]] = DEFAULT_LIGHTS) -> Figure:
    """Fig. 4: two rows per item, the exemplar's and the refined normals' Lambertian shading (white
    albedo) under each light (azimuth, elevation in degrees); columns input, normals, one per light.
    2 * len(items) rows of 2 + len(lights) panels; the fitted exemplar (beyond the paper) is in figs. 3
    and 6 only."""
    stages = predict_stages(estimator, items).stages()
    grid = PanelGrid(len(stages) * len(items), 2 + len(lights),
                     figure_title("Fig. 4 analogue: normals and Lambertian shading under several lights",
                                  preset, [estimator]))
    labels = []
    for i, item in enumerate(items):
        mask = item_mask(item)
        for offset, (stage, batch) in enumerate(stages.items()):
            row, normals = len(stages) * i + offset, batch[i]
            grid.show(row, 0, photo_panel(item), "input")
            grid.show(row, 1, normal_panel(normals), stage)
            for col, (azimuth, elevation) in enumerate(lights, start=2):
                grid.show(row, col, shading_panel(normals, mask, azimuth, elevation), light_label(azimuth, elevation))
            labels.append(f"{item_label(item, i)}\n{stage}")
    grid.label_rows(labels)
    return grid.figure


def figure_error_maps(estimator: NormalEstimator, items: Sequence[Item], preset: str) -> Figure:
    """Fig. 6 (lab split): per item the input, the ground truth, the exemplar and its angular error,
    the refined normals and theirs [, the fitted normals and theirs when ``estimator.fitting`` is
    set] (6 or 8 panels a row), one shared colour bar in degrees."""
    stages = predict_stages(estimator, items, fit=True).stages()
    grid = PanelGrid(len(items), 2 + 2 * len(stages),
                     figure_title("Fig. 6 analogue: angular error maps, coarse vs refined" + fitting_note(estimator),
                                  preset, [estimator]))
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
    """Fig. 7: Lambertian relighting albedo * (ambient + max(0, n . l)) with the refined normals;
    per item the input, the albedo (the dataset's, else image / fitted SH shading; the title
    says which), the normals and one relit image per light. 3 + len(lights) panels a row."""
    pred = predict_stages(estimator, items)
    albedos = [albedo_of(item, pred.refined[i]) for i, item in enumerate(items)]
    sources = sorted({source for _, source in albedos})
    grid = PanelGrid(len(items), 3 + len(lights),
                     figure_title(f"Fig. 7 analogue: Lambertian relighting, ambient {ambient:g}; {', '.join(sources)}",
                                  preset, [estimator]))
    for row, (item, (albedo, source)) in enumerate(zip(items, albedos)):
        mask = item_mask(item)
        normals = pred.refined[row]
        grid.show(row, 0, photo_panel(item), "input")
        grid.show(row, 1, image_panel(albedo * mask),
                  "albedo" if source == "dataset albedo" else "albedo (estimated)")
        grid.show(row, 2, normal_panel(normals), "refined")
        for col, (azimuth, elevation) in enumerate(lights, start=3):
            grid.show(row, col, relit_panel(albedo, normals, mask, azimuth, elevation, ambient),
                      light_label(azimuth, elevation))
    grid.label_rows(item_labels(items))
    return grid.figure


def figure_checkpoints(estimators: Mapping[str, NormalEstimator], items: Sequence[Item], preset: str) -> Figure:
    """Fig. 8: exemplars from early, middle and final coarse checkpoints and the refined normals
    of the refiner trained on each. ``estimators``: row name (Iter1k, Iter50k, Ours-paired) ->
    estimator; per item the input, then (exemplar, refined) per estimator: 1 + 2k panels a row."""
    preds = {name: predict_stages(estimator, items) for name, estimator in estimators.items()}
    grid = PanelGrid(len(items), 1 + 2 * len(estimators),
                     figure_title("Fig. 8 analogue: exemplars from early / middle / final coarse checkpoints",
                                  preset, estimators.values()))
    for row, item in enumerate(items):
        grid.show(row, 0, photo_panel(item), "input")
        for k, (name, pred) in enumerate(preds.items()):
            iteration = estimators[name].provenance.get("coarse_iteration", "?")
            grid.show(row, 1 + 2 * k, normal_panel(pred.coarse[row]), f"{name}\nexemplar @ {iteration} it")
            grid.show(row, 2 + 2 * k, normal_panel(pred.refined[row]), f"{name}\nrefined")
    grid.label_rows(item_labels(items))
    return grid.figure


def figure_architectures(estimators: Mapping[str, NormalEstimator], items: Sequence[Item], preset: str) -> Figure:
    """Fig. 9: refiner architectures in the wild. ``estimators``: label (A1, A2, A3) -> estimator,
    all on the same coarse checkpoint; per item the input, the first estimator's exemplar and
    each estimator's refined normals: 2 + k panels a row."""
    preds = {name: predict_stages(estimator, items) for name, estimator in estimators.items()}
    first = next(iter(preds.values()))
    grid = PanelGrid(len(items), 2 + len(estimators),
                     figure_title("Fig. 9 analogue: A1 (exemplar + image), A2 (feature concat), A3 (modulation)",
                                  preset, estimators.values()))
    for row, item in enumerate(items):
        grid.show(row, 0, photo_panel(item), "input")
        grid.show(row, 1, normal_panel(first.coarse[row]), "coarse exemplar")
        for col, (name, pred) in enumerate(preds.items(), start=2):
            grid.show(row, col, normal_panel(pred.refined[row]), name)
    grid.label_rows(item_labels(items))
    return grid.figure


def figure_variety(estimator: NormalEstimator, items: Sequence[Item], preset: str,
                   light: tuple[float, float] = FRONT_LEFT_LIGHT) -> Figure:
    """Fig. 10: many faces side by side (pick them with ``variety_indices``); rows input, refined
    normals, shading under ``light``; one column per item: 3 * len(items) panels."""
    pred = predict_stages(estimator, items)
    grid = PanelGrid(3, len(items), figure_title(
        "Fig. 10 analogue: identities, skin tones and poses (sorted by albedo brightness)", preset, [estimator]))
    for col, item in enumerate(items):
        grid.show(0, col, photo_panel(item), item_label(item, col))
        grid.show(1, col, normal_panel(pred.refined[col]))
        grid.show(2, col, shading_panel(pred.refined[col], item_mask(item), *light))
    grid.label_rows(["input", "refined", f"shading {light_label(*light)}"])
    return grid.figure


def figure_failures(estimator: NormalEstimator, worst: Sequence[Item], extreme_light: Sequence[Item],
                    preset: str) -> Figure:
    """Fig. 11: failure cases, the items with the largest refined error then the items under the
    most grazing light; per row the input, the ground truth, the refined normals and their error
    (4 panels), one shared colour bar in degrees."""
    items = [*worst, *extreme_light]
    pred = predict_stages(estimator, items)
    grid = PanelGrid(len(items), 4, figure_title("Fig. 11 analogue: failure cases (largest error, extreme light)",
                                                 preset, [estimator]))
    labels = []
    for row, item in enumerate(items):
        mask = item_mask(item)
        error = angular_error_map(pred.refined[row], truth_of(item), mask)
        grid.show(row, 0, photo_panel(item), "input")
        grid.show(row, 1, truth_panel(item), "ground truth")
        grid.show(row, 2, normal_panel(pred.refined[row]), "refined")
        grid.show(row, 3, error_panel(error), _error_title("refined", error))
        kind = "worst" if row < len(worst) else f"light {light_angle(item):.0f} deg off axis"
        labels.append(f"{item_label(item, row)}\n{kind}")
    grid.label_rows(labels)
    grid.error_colorbar()
    return grid.figure


def figure_real_faces(estimator: NormalEstimator, items: Sequence[Item], preset: str,
                      light: tuple[float, float] = FRONT_LEFT_LIGHT) -> Figure:
    """Real photos (no ground truth): per face the input, the exemplar, the refined normals and
    their shading under ``light``, inside the items' masks: 4 panels a row. Items from
    ``load_real_faces``; the refined normals, never fitted ones, as ``hffne predict`` without
    --fit-steps writes them."""
    pred = predict_stages(estimator, items)
    grid = PanelGrid(len(items), 4, figure_title("Real faces (no ground truth)", preset, [estimator]))
    for row, item in enumerate(items):
        show_stages(grid, row, item, pred)
        grid.show(row, 3, shading_panel(pred.refined[row], item_mask(item), *light), f"shading {light_label(*light)}")
    grid.label_rows(item_labels(items))
    return grid.figure


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 150) -> Path:
    """Write ``fig`` as a PNG (parent folders made); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    return path


# ----------------------------------------------------------------------------- choosing items
def items_at(dataset: Dataset, indices: Iterable[int]) -> list[dict[str, Any]]:
    """The dataset's items at ``indices``."""
    return [dataset[int(i)] for i in indices]


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
    """Indices of the ``count`` items with the largest mean refined angular error over the face
    (measured without the estimator's fitting, which would only cost time here)."""
    refining = NormalEstimator(estimator.coarse_net, estimator.refiner, estimator.provenance)   # shares the nets
    table = evaluate(refining, dataset, progress=False).per_image
    rows = table[(table["stage"] == "refined") & (table["region"] == "face")]
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
def load_real_faces(folder: str | os.PathLike, size: int, limit: int | None = None) -> list[dict[str, Any]]:
    """Real photos of ``folder`` (any hffne_lib.data image file, sorted by name; the first ``limit``
    usable ones), the largest face of each found and cropped to ``size`` px as ``hffne predict`` does
    (hffne_lib.predict.face_crops) -> items with "rgb" 3 x S x S, "gray" 1 x S x S in [0, 1],
    "mask" 1 x S x S bool (the face ellipse, hffne_lib.predict.face_mask) and "name". A photo that
    cannot be read or holds no face is skipped with one printed line; none left raises ValueError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"real-faces folder {folder} does not exist")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"no images in {folder}")
    mask = torch.from_numpy(face_mask(size, CROP_SCALE))[None]
    items = []
    for path in paths:
        try:   # ValueError, OSError: unreadable (load_image); NoFaceError (a ValueError): no face
            [(_, crop, _)] = face_crops(load_image(path), size, crop_scale=CROP_SCALE)
        except (ValueError, OSError) as err:
            print(f"real faces: skipped {path.name} ({err})")
            continue
        rgb = torch.from_numpy(crop).permute(2, 0, 1).contiguous()
        items.append({"rgb": rgb, "gray": rgb_to_gray(rgb[None])[0], "mask": mask, "name": path.stem})
        if len(items) == limit:
            break
    if not items:
        raise ValueError(f"no photo left in {folder}: all {len(paths)} unreadable or without a face (lines above)")
    return items
