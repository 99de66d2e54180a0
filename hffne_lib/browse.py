"""Browse results: pick a split, a sample and a variant (experiment), move the light.

    browser = ResultsBrowser({"wild_test": wild_test}, lambda name: load_experiment(cfg, run_dir, name),
                             ["Ours-paired", "A1"], preset="ci")
    browser.show()          # ipywidgets in JupyterLab; a static matplotlib grid without a kernel
    browser.figure()        # the static grid of one selection (what papermill/nbval runs keep)

The computing parts are plain functions (``browse_panels``) so they are testable without
widgets; the widgets only call them and show the result as one PNG. ``fitting`` settings
(hffne_lib.fitting, beyond the paper) add the exemplar fitted to the image and its error.
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
from .experiments import experiments
from .figures import (FRONT_LEFT_LIGHT, RELIGHT_AMBIENT, Item, PanelGrid, StageNormals, albedo_of, angular_error_map,
                      error_panel, figure_title, fitting_note, item_mask, light_label, normal_panel, photo_panel,
                      predict_stages, relit_panel, shading_panel, stage_title, truth_of, truth_panel)
from .fitting import FitSettings
from .pipeline import NormalEstimator

#: Panel names in display order (the ground-truth ones only for items that have a "normal", the
#: fitted ones only when the prediction has fitted normals).
PANELS = ("input", "exemplar", "refined", "fitted", "ground truth", "exemplar error", "refined error", "fitted error",
          "shading", "relit")

#: Slider ranges of the light direction (degrees, see rendering.light_direction).
AZIMUTH_RANGE = (-90.0, 90.0)
ELEVATION_RANGE = (-90.0, 90.0)


def trained_variants(cfg: ExperimentConfig, run_dir: str | os.PathLike) -> list[str]:
    """The experiment names (hffne_lib.experiments registry order) whose refiner has a checkpoint
    under ``run_dir``."""
    return [name for name, experiment in experiments(cfg).items()
            if (Path(run_dir) / experiment.stage / LATEST).is_file()]


def panels_of(item: Item, prediction: StageNormals, azimuth: float, elevation: float,
              ambient: float = RELIGHT_AMBIENT) -> dict[str, np.ndarray]:
    """Panels of one item from its prediction (batch of one): PANELS name -> H x W x 3 array.

    "shading" is the refined normals' Lambertian shading (white albedo), "relit" the item's
    albedo (see figures.albedo_of) relit by albedo * (ambient + max(0, n . l)); both under the
    light (azimuth, elevation) in degrees. Items without ground truth get no truth/error panels,
    predictions without fitted normals no fitted panels.
    """
    mask = item_mask(item)
    stages = {stage: normals[0] for stage, normals in prediction.stages().items()}
    refined = stages["refined"]
    albedo, _ = albedo_of(item, refined)
    panels = {"input": photo_panel(item), **{stage: normal_panel(normals) for stage, normals in stages.items()}}
    if "normal" in item:
        truth = truth_of(item)
        panels["ground truth"] = truth_panel(item)
        for stage, normals in stages.items():
            panels[f"{stage} error"] = error_panel(angular_error_map(normals, truth, mask))
    panels["shading"] = shading_panel(refined, mask, azimuth, elevation)
    panels["relit"] = relit_panel(albedo, refined, mask, azimuth, elevation, ambient)
    return panels


def browse_panels(estimator: NormalEstimator, item: Item, azimuth: float, elevation: float,
                  ambient: float = RELIGHT_AMBIENT) -> dict[str, np.ndarray]:
    """Run ``estimator`` on one item (fitting too when ``estimator.fitting`` is set) and return its
    panels (see ``panels_of``)."""
    return panels_of(item, predict_stages(estimator, [item], fit=True), azimuth, elevation, ambient)


def panels_figure(panels: Mapping[str, np.ndarray], title: str) -> Figure:
    """A one-row matplotlib grid of the panels (in PANELS order), titled ``title``; a colour bar
    in degrees when there are error panels."""
    grid = PanelGrid(1, len(panels), title)
    for col, (name, image) in enumerate(panels.items()):
        grid.show(0, col, image, stage_title(name))
    if "refined error" in panels:
        grid.error_colorbar()
    return grid.figure


def figure_png(fig: Figure) -> bytes:
    """A figure as PNG bytes (for an ipywidgets Image)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


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

    datasets: split name -> dataset; load_variant: variant name -> NormalEstimator (called once
    per variant, then cached); variants: the names to offer; preset: for the titles; fitting:
    settings every variant's exemplar is also fitted with (beyond the paper), None for none.
    """

    def __init__(self, datasets: Mapping[str, Dataset], load_variant: Callable[[str], NormalEstimator],
                 variants: Sequence[str], preset: str, fitting: FitSettings | None = None):
        if not datasets or not variants:
            raise ValueError("ResultsBrowser needs at least one split and one variant")
        self.datasets = dict(datasets)
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
        """The static grid of one selection (defaults: the first split and variant, sample 0)."""
        split = split or next(iter(self.datasets))
        variant = variant or self.variants[0]
        panels = self.panels(split, index, variant, azimuth, elevation)
        estimator = self.estimator(variant)
        what = f"{variant} on {split}[{index}], light {light_label(azimuth, elevation)}{fitting_note(estimator)}"
        return panels_figure(panels, figure_title(what, self.preset, [estimator]))

    def widget(self) -> Any:
        """An ipywidgets box: split, sample, variant, azimuth and elevation controls over the grid."""
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
        image = widgets.Image(format="png")

        def redraw(_: Any = None) -> None:
            index.max = len(self.datasets[split.value]) - 1
            image.value = figure_png(self.figure(split.value, index.value, variant.value,
                                                 azimuth.value, elevation.value))

        for control in (split, index, variant, azimuth, elevation):
            control.observe(redraw, names="value")
        redraw()
        return widgets.VBox([widgets.HBox([split, variant]), widgets.HBox([index]),
                             widgets.HBox([azimuth, elevation]), image])

    def show(self, static: bool | None = None) -> Any:
        """The widget box, or with ``static`` (default: when there is no Jupyter kernel or no
        ipywidgets) the static figure of the default selection."""
        static = not has_widget_frontend() if static is None else static
        return self.figure() if static else self.widget()
