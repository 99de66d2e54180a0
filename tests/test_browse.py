"""Results browser: panels as plain arrays, static mode without a widget frontend, the widget."""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from hffne_lib import browse
from hffne_lib.figures import StageNormals
from hffne_lib.fitting import FitSettings
from test_figures import RES, image_panels, make_item, tiny_estimator


UNFITTED = tuple(name for name in browse.PANELS if not name.startswith("fitted"))


def test_browse_panels_keys_and_shapes():
    item = make_item(0)
    panels = browse.browse_panels(tiny_estimator(), item, 30.0, 10.0)
    assert tuple(panels) == UNFITTED
    assert all(p.shape == (RES, RES, 3) for p in panels.values())
    photo = {k: item[k] for k in ("gray", "rgb")}   # a real photo: no ground truth, no mask
    assert tuple(browse.browse_panels(tiny_estimator(), photo, 0.0, 0.0)) == (
        "input", "exemplar", "refined", "shading", "relit")
    fitting = tiny_estimator()
    fitting.fitting = FitSettings(steps=2)
    fitted = browse.browse_panels(fitting, item, 30.0, 10.0)
    assert tuple(fitted) == browse.PANELS
    assert all(np.array_equal(fitted[name], panels[name]) for name in UNFITTED)   # the rest as without
    assert not np.array_equal(fitted["fitted"], fitted["exemplar"])


def test_light_moves_only_the_lit_panels():
    item = make_item(1)
    normals = item["normal"][None]       # a random network's normals may face away from both lights
    prediction = StageNormals(coarse=normals.roll(3, dims=-1), refined=normals, fitted=normals.roll(2, dims=-2))
    a = browse.panels_of(item, prediction, -60.0, 0.0)
    b = browse.panels_of(item, prediction, 60.0, 0.0)
    for name in browse.PANELS:
        moved = not np.array_equal(a[name], b[name])
        assert moved == (name in ("shading", "relit")), name


def make_browser(fitting: FitSettings | None = None) -> browse.ResultsBrowser:
    data = {"wild_test": [make_item(i) for i in range(3)], "lab_test": [make_item(5)]}
    return browse.ResultsBrowser(data, lambda name: tiny_estimator("A1" if name == "A1" else "A3"),
                                 ["Ours-paired", "A1"], preset="ci", fitting=fitting)


def test_static_mode_without_frontend():
    browser = make_browser()
    assert not browse.has_widget_frontend()      # pytest runs no Jupyter kernel
    fig = browser.show()
    assert isinstance(fig, Figure) and image_panels(fig) == len(UNFITTED)
    assert "RANDOM STAND-IN" in fig._suptitle.get_text()
    assert image_panels(browser.figure("lab_test", 0, "A1", 10.0, 40.0)) == len(UNFITTED)


def test_fitting_settings_reach_every_variant_and_the_title():
    browser = make_browser(FitSettings(steps=2))
    fig = browser.figure("lab_test", 0, "A1")
    assert image_panels(fig) == len(browse.PANELS)
    assert "fitted to the image in 2 steps (beyond the paper)" in fig._suptitle.get_text()
    assert browser.estimator("A1").fitting == FitSettings(steps=2)


def test_widget_builds_and_redraws_headless():
    browser = make_browser()
    box = browser.show(static=False)
    image = box.children[-1]
    assert image.value[:8] == b"\x89PNG\r\n\x1a\n"
    first = image.value
    slider = box.children[2].children[0]      # azimuth
    slider.value = 80.0
    assert image.value != first
    split = box.children[0].children[0]
    split.value = "lab_test"
    assert box.children[1].children[0].max == 0


def test_trained_variants_lists_runs_with_a_checkpoint(tmp_path):
    from hffne_lib.config import get_config
    cfg = get_config("ci")
    for stage in ("refiner", "refiner_A1", "refiner_adain"):
        (tmp_path / stage).mkdir()
    (tmp_path / "refiner" / "latest.pt").touch()
    (tmp_path / "refiner_A1" / "latest.pt").touch()
    assert browse.trained_variants(cfg, tmp_path) == ["Ours-paired", "A1"]
