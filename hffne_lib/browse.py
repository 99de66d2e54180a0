"""Browse results: pick a split, a sample and a variant (experiment), move the light.

    browser = ResultsBrowser({"wild_test": wild_test}, lambda name: load_experiment(cfg, run_dir, name),
                             ["Ours-paired", "A1"], preset="ci")
    browser.show()          # ipywidgets in JupyterLab; a static matplotlib grid without a kernel
    browser.figure()        # the static grid of one selection (what papermill/nbval runs keep)

The computing parts are plain functions (``panels_of``: the panels of an item's
``figures.predict_stages``) so they are testable without widgets; the widgets only call them and
show the result as one PNG (or, when a variant cannot be loaded or drawn, its one-line error in
place of the picture). ``fitting`` settings
(hffne_lib.fitting, beyond the paper) add the exemplar fitted to the image and its error. Empty
splits are left out (the browser says which).
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from torch.utils.data import Dataset

from .checkpoint import LATEST
from .config import ExperimentConfig
from .experiments import experiment_checkpoints, experiments
from .figures import (FRONT_LEFT_LIGHT, RELIGHT_AMBIENT, Item, PanelGrid, StageNormals, albedo_of, angular_error_map,
                      dataset_note, error_panel, figure_title, fitting_note, item_mask, light_label,
                      normal_panel, photo_panel, predict_stages, relit_panel, shading_panel, stage_title, truth_of,
                      truth_panel)
from .fitting import FitSettings
from .pipeline import NormalEstimator

#: Panel names in display order (the ground-truth ones only for items that have a "normal", the
#: refined ones only when the estimator has a refiner, the fitted ones only when the prediction
#: has fitted normals).
PANELS = ("input", "exemplar", "refined", "fitted", "ground truth", "exemplar error", "refined error", "fitted error",
          "shading", "relit")

#: Slider ranges of the light direction (degrees, see rendering.light_direction).
AZIMUTH_RANGE = (-90.0, 90.0)
ELEVATION_RANGE = (-90.0, 90.0)

#: What a variant that cannot be shown raises: a checkpoint missing, unreadable or of another
#: resolution (official.CheckpointError, a ValueError), an unknown name, items it cannot take.
LOAD_ERRORS = (FileNotFoundError, KeyError, ValueError)


def trained_variants(cfg: ExperimentConfig, run_dir: str | os.PathLike) -> list[str]:
    """The experiment names (hffne_lib.experiments registry order) whose refiner's checkpoint and
    the coarse one it was trained on (experiments.experiment_checkpoints) both exist under
    ``run_dir``. ValueError naming ``run_dir`` when there is none."""
    names = [name for name in experiments(cfg)
             if all(path.is_file() for path in experiment_checkpoints(cfg, run_dir, name))]
    if not names:
        raise ValueError(f"no trained run in {Path(run_dir).resolve()} (a refiner's {LATEST} and its coarse "
                         f"checkpoint): train them with notebooks 01 and 02 or `make reproduce PRESET={cfg.name}`")
    return names


def panels_of(item: Item, prediction: StageNormals, azimuth: float, elevation: float,
              ambient: float = RELIGHT_AMBIENT) -> dict[str, np.ndarray]:
    """Panels of one item from its prediction (batch of one): PANELS name -> H x W x 3 array.

    "shading" is the Lambertian shading (white albedo) of the estimator's result
    (``StageNormals.output``: the refined normals, the fitted exemplar without refiner), "relit"
    the item's albedo (see figures.albedo_of) relit by albedo * (ambient + max(0, n . l)) with it;
    both under the light (azimuth, elevation) in degrees. Items without ground truth get no
    truth/error panels, predictions without refined or fitted normals none of theirs.
    """
    mask = item_mask(item)
    stages = {stage: normals[0] for stage, normals in prediction.stages().items()}
    result = prediction.output()[1][0]
    albedo, _ = albedo_of(item, result)
    panels = {"input": photo_panel(item), **{stage: normal_panel(normals) for stage, normals in stages.items()}}
    if "normal" in item:
        truth = truth_of(item)
        panels["ground truth"] = truth_panel(item)
        for stage, normals in stages.items():
            panels[f"{stage} error"] = error_panel(angular_error_map(normals, truth, mask))
    panels["shading"] = shading_panel(result, mask, azimuth, elevation)
    panels["relit"] = relit_panel(albedo, result, mask, azimuth, elevation, ambient)
    return panels


def panels_figure(panels: Mapping[str, np.ndarray], title: str) -> Figure:
    """A one-row matplotlib grid of the panels (in PANELS order), titled ``title``; a colour bar
    in degrees when there are error panels."""
    grid = PanelGrid(1, len(panels), title)
    for col, (name, image) in enumerate(panels.items()):
        grid.show(0, col, image, stage_title(name))
    if "exemplar error" in panels:
        grid.error_colorbar()
    return grid.figure


def figure_png(fig: Figure) -> bytes:
    """A figure as PNG bytes (for an ipywidgets Image)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def refiner_note(estimator: NormalEstimator) -> str:
    """", refiner @ N it" from the estimator's provenance "refiner_iteration"; ", no refiner" without
    one; "" when the iteration is unknown (the authors' release)."""
    if estimator.refiner is None:
        return ", no refiner"
    iteration = estimator.provenance.get("refiner_iteration")
    return "" if iteration is None else f", refiner @ {iteration} it"


def has_widget_frontend() -> bool:
    """True inside a Jupyter kernel with ipywidgets installed. A kernel cannot tell whether a live
    frontend is attached (papermill and nbval run kernels too), so notebooks also draw
    ``ResultsBrowser.figure()``, which every runner keeps."""
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in shell.config


class ResultsBrowser:
    """Split x sample x variant browser over datasets and lazily loaded estimators.

    datasets: split name -> dataset (empty ones are left out, with a printed line that ``notice``
    keeps); load_variant: variant name -> NormalEstimator (called once per variant, then cached);
    variants: the names to offer (``trained_variants``); preset: for the titles; fitting: settings
    every variant's exemplar is also fitted with (beyond the paper), None for none.
    """

    def __init__(self, datasets: Mapping[str, Dataset], load_variant: Callable[[str], NormalEstimator],
                 variants: Sequence[str], preset: str, fitting: FitSettings | None = None):
        empty = [split for split, dataset in datasets.items() if len(dataset) == 0]
        if len(empty) == len(datasets):
            raise ValueError(f"ResultsBrowser has no split with items (given: {', '.join(empty) or 'none'}): "
                             f"pass at least one non-empty split")
        if not variants:
            raise ValueError("ResultsBrowser has no variant: pass the trained ones, trained_variants(cfg, run_dir)")
        self.datasets = {split: dataset for split, dataset in datasets.items() if split not in empty}
        self.notice = f"left out the empty split(s) {', '.join(empty)}" if empty else ""
        if self.notice:
            print(f"results browser: {self.notice}")
        self.load_variant = load_variant
        self.variants = list(variants)
        self.preset = preset
        self.fitting = fitting
        self._estimators: dict[str, NormalEstimator] = {}
        self._last: tuple[tuple[str, str, int], StageNormals] | None = None   # the current selection's

    def estimator(self, variant: str) -> NormalEstimator:
        """The variant's estimator, loaded on first use, with the browser's fitting settings."""
        if variant not in self._estimators:
            self._estimators[variant] = self.load_variant(variant)
            self._estimators[variant].fitting = self.fitting
        return self._estimators[variant]

    def panels(self, split: str, index: int, variant: str, azimuth: float, elevation: float) -> dict[str, np.ndarray]:
        """Panels of one selection; moving only the light does not run the network again."""
        item = self.datasets[split][index]
        key = (variant, split, index)
        if self._last is None or self._last[0] != key:
            self._last = (key, predict_stages(self.estimator(variant), [item], fit=True))
        return panels_of(item, self._last[1], azimuth, elevation)

    def figure(self, split: str | None = None, index: int = 0, variant: str | None = None,
               azimuth: float = FRONT_LEFT_LIGHT[0], elevation: float = FRONT_LEFT_LIGHT[1]) -> Figure:
        """The static grid of one selection (defaults: the first split and variant, sample 0); the
        title gives the refiner's iteration (``refiner_note``). Raises what loading the variant
        raises (LOAD_ERRORS)."""
        split = split or next(iter(self.datasets))
        variant = variant or self.variants[0]
        panels = self.panels(split, index, variant, azimuth, elevation)
        estimator = self.estimator(variant)
        what = (f"{variant} on {split}[{index}]{refiner_note(estimator)}, light {light_label(azimuth, elevation)}"
                f"{fitting_note(estimator)}")
        return panels_figure(panels, figure_title(what, self.preset, [estimator], dataset_note(self.datasets[split])))

    def widget(self) -> Any:
        """An ipywidgets box: split, sample, variant, azimuth and elevation controls, a message line
        (``notice``, or why the selection cannot be drawn, the picture then cleared) and the grid."""
        import ipywidgets as widgets

        first = next(iter(self.datasets))
        split = widgets.Dropdown(options=list(self.datasets), value=first, description="split")
        index = widgets.IntSlider(value=0, min=0, max=len(self.datasets[first]) - 1, description="sample",
                                  continuous_update=False)
        variant = widgets.Dropdown(options=self.variants, value=self.variants[0], description="variant")
        azimuth = widgets.FloatSlider(value=FRONT_LEFT_LIGHT[0], min=AZIMUTH_RANGE[0], max=AZIMUTH_RANGE[1], step=5,
                                      description="azimuth", continuous_update=False)
        elevation = widgets.FloatSlider(value=FRONT_LEFT_LIGHT[1], min=ELEVATION_RANGE[0], max=ELEVATION_RANGE[1],
                                        step=5, description="elevation", continuous_update=False)
        message = widgets.Label(value=self.notice)
        image = widgets.Image(format="png")

        def redraw(_: Any = None) -> None:
            index.max = len(self.datasets[split.value]) - 1
            try:
                image.value = figure_png(self.figure(split.value, index.value, variant.value,
                                                     azimuth.value, elevation.value))
                message.value = self.notice
            except LOAD_ERRORS as err:
                image.value = b""
                reason = err.args[0] if err.args else type(err).__name__
                message.value = f"cannot show {variant.value} on {split.value}[{index.value}]: {reason}"

        for control in (split, index, variant, azimuth, elevation):
            control.observe(redraw, names="value")
        redraw()
        return widgets.VBox([widgets.HBox([split, variant]), widgets.HBox([index]),
                             widgets.HBox([azimuth, elevation]), message, image])

    def show(self, static: bool | None = None) -> Any:
        """The widget box, or with ``static`` (default: when there is no Jupyter kernel or no
        ipywidgets) the static figure of the default selection."""
        static = not has_widget_frontend() if static is None else static
        return self.figure() if static else self.widget()
