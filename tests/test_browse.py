"""Results browser: panels as plain arrays, static mode without a widget frontend, the widget,
its one-line messages (a variant that cannot be loaded, empty splits), which runs it offers."""
from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from hffne_lib import browse
from hffne_lib.config import get_config
from hffne_lib.figures import ERROR_COLORBAR_LABEL, StageNormals, predict_stages
from hffne_lib.fitting import FitSettings
from hffne_lib.official import CheckpointError
from test_figures import RES, coarse_only_estimator, image_panels, make_item, tiny_estimator


UNFITTED = tuple(name for name in browse.PANELS if not name.startswith("fitted"))


def browse_panels(estimator, item, azimuth: float, elevation: float) -> dict[str, np.ndarray]:
    """The panels the browser shows for one item (fitting too when the estimator has settings)."""
    return browse.panels_of(item, predict_stages(estimator, [item], fit=True), azimuth, elevation)


def test_browse_panels_keys_and_shapes():
    item = make_item(0)
    panels = browse_panels(tiny_estimator(), item, 30.0, 10.0)
    assert tuple(panels) == UNFITTED
    assert all(p.shape == (RES, RES, 3) for p in panels.values())
    photo = {k: item[k] for k in ("gray", "rgb")}   # a real photo: no ground truth, no mask
    assert tuple(browse_panels(tiny_estimator(), photo, 0.0, 0.0)) == (
        "input", "exemplar", "refined", "shading", "relit")
    fitting = tiny_estimator()
    fitting.fitting = FitSettings(steps=2)
    fitted = browse_panels(fitting, item, 30.0, 10.0)
    assert tuple(fitted) == browse.PANELS
    assert all(np.array_equal(fitted[name], panels[name]) for name in UNFITTED)   # the rest as without
    assert not np.array_equal(fitted["fitted"], fitted["exemplar"])
    coarse_only = browse_panels(coarse_only_estimator(), item, 30.0, 10.0)    # no refiner: its fit instead
    assert tuple(coarse_only) == tuple(name for name in browse.PANELS if not name.startswith("refined"))


def test_light_moves_only_the_lit_panels():
    item = make_item(1)
    normals = item["normal"][None]       # a random network's normals may face away from both lights
    prediction = StageNormals(coarse=normals.roll(3, dims=-1), refined=normals, fitted=normals.roll(2, dims=-2))
    a = browse.panels_of(item, prediction, -60.0, 0.0)
    b = browse.panels_of(item, prediction, 60.0, 0.0)
    for name in browse.PANELS:
        moved = not np.array_equal(a[name], b[name])
        assert moved == (name in ("shading", "relit")), name


def make_browser(fitting: FitSettings | None = None, broken: str = "", **extra_splits: list) -> browse.ResultsBrowser:
    """Splits wild_test (3 items), lab_test (1) and ``extra_splits``; variants Ours-paired and A1, the
    ``broken`` one failing to load as a truncated checkpoint would."""
    def load(name: str):
        if name == broken:
            raise CheckpointError(f"runs/ci/{name}/latest.pt: truncated file, train it again")
        return tiny_estimator("A1" if name == "A1" else "A3")

    data = {"wild_test": [make_item(i) for i in range(3)], "lab_test": [make_item(5)], **extra_splits}
    return browse.ResultsBrowser(data, load, ["Ours-paired", "A1"], preset="ci", fitting=fitting)


def test_static_mode_without_frontend():
    browser = make_browser()
    assert not browse.has_widget_frontend()      # pytest runs no Jupyter kernel
    fig = browser.show()
    assert isinstance(fig, Figure) and image_panels(fig) == len(UNFITTED)
    title = fig._suptitle.get_text()
    assert "RANDOM STAND-IN" in title and title.splitlines()[-1] == "data: unnamed data set (list)"
    assert title.startswith("Ours-paired on wild_test[0], refiner @ 40 it, light az -30, el 20")
    assert any(ax.get_ylabel() == ERROR_COLORBAR_LABEL for ax in fig.axes)
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


def test_widget_shows_a_variant_that_fails_to_load_as_one_line():
    box = make_browser(broken="A1").show(static=False)
    variant, message, image = box.children[0].children[1], box.children[3], box.children[-1]
    assert message.value == "" and image.value[:4] == b"\x89PNG"
    variant.value = "A1"                      # raises inside the observe callback unless caught
    assert message.value == ("cannot show A1 on wild_test[0]: runs/ci/A1/latest.pt: truncated file, "
                             "train it again")
    assert image.value == b""                 # no picture of the variant before
    variant.value = "Ours-paired"
    assert message.value == "" and image.value[:4] == b"\x89PNG"


def test_empty_splits_are_left_out_and_said_so(capsys):
    browser = make_browser(scans=[])
    assert list(browser.datasets) == ["wild_test", "lab_test"]
    assert capsys.readouterr().out == "results browser: left out the empty split(s) scans\n"
    box = browser.show(static=False)
    assert box.children[0].children[0].options == ("wild_test", "lab_test") and box.children[3].value == browser.notice
    with pytest.raises(ValueError, match=r"^ResultsBrowser has no split with items \(given: scans\)"):
        browse.ResultsBrowser({"scans": []}, tiny_estimator, ["Ours-paired"], preset="ci")
    with pytest.raises(ValueError, match=r"^ResultsBrowser has no variant: .*trained_variants\(cfg, run_dir\)"):
        browse.ResultsBrowser({"lab_test": [make_item(0)]}, tiny_estimator, [], preset="ci")


def test_trained_variants_needs_the_refiner_and_its_coarse_checkpoint(tmp_path):
    cfg = get_config("ci")
    with pytest.raises(ValueError, match=rf"^no trained run in {tmp_path} .*notebooks 01 and 02 or "
                                         rf"`make reproduce PRESET=ci`$"):
        browse.trained_variants(cfg, tmp_path)
    for stage in ("refiner", "refiner_A1", "refiner_adain", "refiner_iter_early", "coarse"):
        (tmp_path / stage).mkdir()
    for stage in ("refiner", "refiner_A1", "refiner_iter_early"):
        (tmp_path / stage / "latest.pt").touch()
    with pytest.raises(ValueError, match="no trained run"):     # refiners without their coarse checkpoint
        browse.trained_variants(cfg, tmp_path)
    (tmp_path / "coarse" / "latest.pt").touch()                 # Iter1k's exemplar milestone is still missing
    assert browse.trained_variants(cfg, tmp_path) == ["Ours-paired", "A1"]
