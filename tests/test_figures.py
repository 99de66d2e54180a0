"""Figures: panel counts on a tiny 64 px estimator and hand-made items, titles (VGG19, data),
an estimator without refiner, one-line errors for empty or mis-sized inputs, relighting, selections,
real photos as ``hffne predict`` crops them (face photo fixture from test_predict.py)."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from hffne_lib import figures
from hffne_lib.coarse import UNetGenerator
from hffne_lib.conventions import normalize, shade_lambertian
from hffne_lib.data import LIGHT_FIELDS, FaceNormalDataset, load_image
from hffne_lib.fitting import FitSettings
from hffne_lib.pipeline import NormalEstimator
from hffne_lib.predict import predict_image
from hffne_lib.refiner import Refiner, RefinerConfig
from hffne_lib.rendering import light_direction
from hffne_lib.vgg import RANDOM_SOURCE
from test_predict import face_photo, save  # noqa: F401 - shared fixture

RES = 64
#: Where the hand-made items "come from" (figures.DATA_KEY), as a figure title must say.
SPHERES = "hand-made spheres"


def tiny_estimator(architecture: str = "A1", seed: int = 0) -> NormalEstimator:
    """Random-weight 64 px estimator whose VGG19 is marked as the random stand-in. The default
    A1 has no VGG19 inside (fast); A2/A3 run the full VGG19 trunk."""
    torch.manual_seed(seed)
    coarse = UNetGenerator(1, base_width=8, depth=6)
    refiner = Refiner(RefinerConfig(architecture=architecture, base_width=8, code_dim=16))
    return NormalEstimator(coarse, refiner, {"vgg_weights": f"{RANDOM_SOURCE}, seed 0", "coarse_iteration": 7,
                                             "refiner_iteration": 40, "resolution": RES})


def coarse_only_estimator(steps: int = 2) -> NormalEstimator:
    """The tiny estimator's coarse net alone with fitting settings, as NormalEstimator.from_checkpoints
    (coarse, fitting=...) makes it (same provenance "vgg_weights")."""
    return NormalEstimator(tiny_estimator().coarse_net, None, {"vgg_weights": figures.NO_REFINER_VGG,
                                                               "coarse_iteration": 7, "resolution": RES},
                           FitSettings(steps=steps))


def sphere(res: int = RES) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit normals of a sphere filling the image (3 x H x W, zero outside) and its mask (1 x H x W)."""
    v, u = torch.meshgrid(torch.linspace(-1, 1, res), torch.linspace(-1, 1, res), indexing="ij")
    mask = (u ** 2 + v ** 2 < 0.8).float()[None]
    z = (1 - u ** 2 - v ** 2).clamp_min(0).sqrt()
    return normalize(torch.stack([u, -v, z])[None])[0] * mask, mask


def light_vector(direction: tuple[float, float, float]) -> torch.Tensor:
    """A LIGHT_FIELDS vector of one directional light."""
    values = dict.fromkeys(LIGHT_FIELDS, 0.0)
    values.update(strength=1.0, dir_x=direction[0], dir_y=direction[1], dir_z=direction[2])
    return torch.tensor([values[k] for k in LIGHT_FIELDS])


def make_item(seed: int, identity: int | None = None, res: int = RES) -> dict:
    """A dataset-shaped item: sphere normals, Lambertian grey image, colour albedo, light, pose."""
    g = torch.Generator().manual_seed(seed)
    normal, mask = sphere(res)
    albedo = (0.3 + 0.6 * torch.rand(3, 1, 1, generator=g)).expand(3, res, res) * mask
    direction = light_direction(float(torch.rand(1, generator=g)) * 160 - 80, 10.0)
    rgb = albedo * shade_lambertian(normal[None], direction)[0]
    detail = torch.zeros_like(mask)
    detail[..., res // 4: res // 2, res // 4: -res // 4] = 1
    return {"gray": rgb.mean(0, keepdim=True), "rgb": rgb, "normal": normal, "mask": mask, "detail_mask": detail * mask,
            "albedo": albedo, "light": light_vector(tuple(direction.tolist())),
            "identity": seed if identity is None else identity, "pose": torch.tensor([5.0 * seed, 0.0, 0.0]),
            figures.DATA_KEY: SPHERES}


def image_panels(fig: Figure) -> int:
    """Number of image panels (colour bars excluded)."""
    return sum(1 for ax in fig.axes if ax.images)


def assert_titled(fig: Figure, vgg: str = "RANDOM STAND-IN", data: str = SPHERES) -> None:
    """The title names the preset, the VGG19 note and, on its last line, where the faces come from."""
    title = fig._suptitle.get_text()
    assert "preset ci" in title and vgg in title
    assert title.splitlines()[-1] == f"data: {data}"


def error_colorbars(fig: Figure) -> list:
    """The figure's error colour bars (matplotlib Colorbar objects)."""
    return [ax._colorbar for ax in fig.axes if ax.get_ylabel() == figures.ERROR_COLORBAR_LABEL]


@pytest.fixture(scope="module")
def estimator() -> NormalEstimator:
    return tiny_estimator()


@pytest.fixture(scope="module")
def items() -> list[dict]:
    return [make_item(seed) for seed in range(2)]


def test_single_estimator_figures_have_their_panels(estimator, items):
    lights = figures.DEFAULT_LIGHTS
    expected = {figures.figure_exemplar_vs_refined: 4 * len(items),
                figures.figure_shading: 2 * len(items) * (2 + len(lights)),
                figures.figure_error_maps: 6 * len(items),
                figures.figure_relighting: len(items) * (3 + len(lights)),
                figures.figure_variety: 3 * len(items)}
    for draw, panels in expected.items():
        fig = draw(estimator, items, "ci")
        assert image_panels(fig) == panels, draw.__name__
        assert_titled(fig)


def test_figures_3_and_6_add_the_fitted_exemplar_when_the_estimator_fits(items):
    fitting = tiny_estimator()
    fitting.fitting = FitSettings(steps=2)
    prediction = figures.predict_stages(fitting, items, fit=True)
    gray = figures.stack(items, "gray")
    masks = torch.stack([figures.item_mask(item) for item in items])
    expected = fitting.fit(gray, fitting.coarse(gray), masks.float()) * masks
    assert torch.equal(prediction.fitted, expected) and not torch.equal(prediction.fitted, prediction.coarse)
    assert figures.predict_stages(fitting, items).fitted is None                  # only when asked
    assert figures.predict_stages(tiny_estimator(), items, fit=True).fitted is None  # and when settings exist
    fig3 = figures.figure_exemplar_vs_refined(fitting, items, "ci")
    fig6 = figures.figure_error_maps(fitting, items, "ci")
    assert image_panels(fig3) == 5 * len(items) and image_panels(fig6) == 8 * len(items)
    for fig in (fig3, fig6):
        assert_titled(fig)
        assert "fitted to the image in 2 steps (beyond the paper)" in fig._suptitle.get_text()
    assert fig3.axes[3].get_title() == figures.FITTED_TITLE and fig3.axes[4].get_title() == "ground truth"
    assert fig6.axes[7].get_title().startswith("fitted err\nmean")


def test_real_faces_figure_without_ground_truth(estimator, items):
    photos = [{"rgb": item["rgb"], "gray": item["gray"], "name": f"photo{i}", figures.DATA_KEY: "your photos, x"}
              for i, item in enumerate(items)]
    fig = figures.figure_real_faces(estimator, photos, "ci")
    assert image_panels(fig) == 4 * len(photos)
    assert_titled(fig, data="your photos, x")


def test_multi_estimator_figures(items):
    runs = {"A1": tiny_estimator("A1", 1), "A2": tiny_estimator("A2", 2), "A3": tiny_estimator("A3", 3)}
    fig8 = figures.figure_checkpoints(runs, items, "ci")
    assert image_panels(fig8) == len(items) * (1 + 2 * len(runs))
    assert "exemplar @ 7 it" in fig8.axes[1].get_title()
    fig9 = figures.figure_architectures(runs, items, "ci")
    assert image_panels(fig9) == len(items) * (2 + len(runs))
    assert_titled(fig9)


def test_failures_figure(estimator, items):
    fig = figures.figure_failures(estimator, items[:1], items, "ci")
    assert image_panels(fig) == 4 * 3
    assert_titled(fig)


def test_vgg_note_reads_the_sources_provenance_really_holds(estimator):
    """The strings pipeline.from_checkpoints / from_official and train.train_refiner write."""
    def with_source(source: str | None) -> NormalEstimator:
        return NormalEstimator(estimator.coarse_net, estimator.refiner, {} if source is None else {"vgg_weights": source})

    trained = with_source("/w/vgg19.pth")
    official = with_source("RefinerModel.pt (the release's encoder VGG19)")
    a1 = with_source("perceptual loss: /w/vgg19.pth")
    assert figures.vgg_note([trained]) == figures.vgg_note([official]) == "VGG19: ImageNet weights"
    assert "STAND-IN" in figures.vgg_note([trained, estimator])
    assert "STAND-IN" in figures.vgg_note([with_source(f"perceptual loss: {RANDOM_SOURCE}, seed 0")])
    assert figures.vgg_note([a1]) == "VGG19: none in the A1 refiner (ImageNet weights in its training loss)"
    assert figures.vgg_note([a1, trained]) == ("VGG19: none in the A1 refiner (ImageNet weights in its training "
                                               "loss); ImageNet weights")
    assert figures.vgg_note([coarse_only_estimator()]) == "VGG19: none (no refiner)"
    assert figures.vgg_note([with_source(None)]) == "VGG19: weights unknown"
    with pytest.raises(ValueError, match="needs at least one estimator"):
        figures.vgg_note([])


def test_relit_panel_is_lambertian_and_moves_with_the_light():
    normal, mask = sphere()
    white = torch.ones(3, RES, RES)
    for azimuth, elevation in ((0.0, 0.0), (40.0, -20.0)):
        expected = shade_lambertian(normal[None], light_direction(azimuth, elevation))[0, 0] * mask[0]
        relit = figures.relit_panel(white, normal, mask, azimuth, elevation, ambient=0.0)
        np.testing.assert_allclose(relit[..., 1], expected.clamp(0, 1).numpy(), atol=1e-6)
    # frontal light on a sphere: the shading is n_z
    frontal = figures.shading_panel(normal, mask, 0.0, 0.0)
    np.testing.assert_allclose(frontal[..., 0], normal[2].numpy(), atol=1e-6)
    left = figures.relit_panel(white, normal, mask, -60.0, 0.0)
    right = figures.relit_panel(white, normal, mask, 60.0, 0.0)
    assert np.abs(left - right).mean() > 0.1
    assert left[:, : RES // 2].mean() > left[:, RES // 2:].mean()   # light from the image left


def test_albedo_from_the_dataset_or_estimated_and_scaled_for_display(items):
    item = items[0]
    albedo, source = figures.albedo_of(item, item["normal"])
    assert source == figures.DATASET_ALBEDO and torch.equal(albedo, item["albedo"])
    photo = {k: item[k] for k in ("gray", "rgb", "mask")}
    estimated, source = figures.albedo_of(photo, item["normal"])
    assert source == figures.ESTIMATED_ALBEDO and estimated.shape == (3, RES, RES)
    # on lit pixels the SH fit recovers the albedo up to one factor (the estimate is relative)
    lit = (item["mask"][0] > 0) & (item["gray"][0] > 0.2)
    ratio = estimated[:, lit] / item["albedo"][:, lit]
    assert ratio.std() / ratio.mean() < 0.05
    # scaled for display: only the brightest 1% of the face saturates (unscaled, about 1 on average: a third)
    face = item["mask"].expand(3, -1, -1) > 0
    assert float((estimated[face] > 1.0).float().mean()) <= 0.02
    assert float(estimated[face].max()) > 0.9


def test_relighting_figure_says_the_albedo_is_estimated_and_scaled(estimator, items):
    photos = [{k: item[k] for k in ("gray", "rgb", "mask", figures.DATA_KEY)} for item in items]
    fig = figures.figure_relighting(estimator, photos, "ci")
    assert figures.ESTIMATED_ALBEDO in fig._suptitle.get_text()
    assert fig.axes[1].get_title() == "albedo (estimated, scaled)"
    assert figures.figure_relighting(estimator, items, "ci").axes[1].get_title() == "albedo"


def test_error_panel_marks_background_white():
    normal, mask = sphere()
    error = figures.angular_error_map(normal, normal, mask)
    panel = figures.error_panel(error)
    assert panel.shape == (RES, RES, 3)
    assert np.all(panel[0, 0] == 1.0) and float(error.nanmean()) < 1e-3


def test_selections(estimator):
    data = [make_item(seed, identity=seed // 2) for seed in range(6)]
    data[3]["light"] = light_vector((0.99, 0.0, 0.14))
    assert figures.light_angle(data[3]) == pytest.approx(math.degrees(math.atan2(0.99, 0.14)))
    assert figures.extreme_light_indices(data, 1) == [3]
    chosen = figures.variety_indices(data, 2)
    assert len(chosen) == 2 and len({data[i]["identity"] for i in chosen}) == 2


@pytest.mark.parametrize("make_estimator", [tiny_estimator, coarse_only_estimator])
def test_worst_indices_are_the_items_with_the_largest_error(make_estimator):
    """Ranked by the mean error over the face of the estimator's result (refined, or fitted without refiner)."""
    runs = make_estimator()
    data = [make_item(seed) for seed in range(6)]
    stage, normals = figures.predict_stages(runs, data).output()
    errors = [float(figures.angular_error_map(normals[i], item["normal"], item["mask"]).nanmean())
              for i, item in enumerate(data)]
    assert stage == ("refined" if runs.refiner is not None else "fitted")
    assert figures.worst_indices(runs, data, 2) == sorted(range(len(data)), key=errors.__getitem__, reverse=True)[:2]


def test_error_figures_carry_a_colour_bar_open_above_the_clip(estimator, items):
    for fig in (figures.figure_error_maps(estimator, items, "ci"), figures.figure_failures(estimator, items[:1], [], "ci")):
        [colorbar] = error_colorbars(fig)
        assert colorbar.extend == "max" and colorbar.norm.vmax == figures.ERROR_MAX_DEG
    assert figures.ERROR_COLORBAR_LABEL == "angular error (deg), clipped at 60"


def test_an_estimator_without_refiner_draws_its_fitted_exemplar(items):
    coarse_only = coarse_only_estimator()
    prediction = figures.predict_stages(coarse_only, items)      # no refiner: fitted even unasked
    assert prediction.refined is None and list(prediction.stages()) == ["exemplar", "fitted"]
    assert prediction.output()[0] == "fitted" and torch.equal(prediction.output()[1], prediction.fitted)
    lights = figures.DEFAULT_LIGHTS
    expected = {figures.figure_exemplar_vs_refined: 4 * len(items),
                figures.figure_shading: 2 * len(items) * (2 + len(lights)),
                figures.figure_error_maps: 6 * len(items),
                figures.figure_relighting: len(items) * (3 + len(lights)),
                figures.figure_variety: 3 * len(items),
                figures.figure_real_faces: 4 * len(items)}
    for draw, panels in expected.items():
        fig = draw(coarse_only, items, "ci")
        assert image_panels(fig) == panels, draw.__name__
        assert_titled(fig, vgg="VGG19: none (no refiner)")
    assert figures.figure_exemplar_vs_refined(coarse_only, items, "ci")._suptitle.get_text().startswith(
        "Fig. 3 analogue: coarse exemplar @ 7 it, no refiner + exemplar fitted to the image in 2 steps")
    assert image_panels(figures.figure_failures(coarse_only, items[:1], [], "ci")) == 4
    runs = {"Ours-paired": tiny_estimator(), "coarse only": coarse_only}
    fig8 = figures.figure_checkpoints(runs, items, "ci")
    assert image_panels(fig8) == len(items) * 5 and fig8.axes[4].get_title() == "coarse only\nfitted"
    assert image_panels(figures.figure_architectures(runs, items, "ci")) == len(items) * 4


def test_empty_inputs_and_mis_sized_items_are_one_line_errors(estimator, items):
    for draw in (figures.figure_exemplar_vs_refined, figures.figure_error_maps, figures.figure_variety,
                 figures.figure_shading, figures.figure_relighting, figures.figure_real_faces):
        with pytest.raises(ValueError, match=r"^no items to draw: pass at least one"):
            draw(estimator, [], "ci")
    with pytest.raises(ValueError, match=r"^no items to draw"):
        figures.figure_failures(estimator, [], [], "ci")
    for draw in (figures.figure_architectures, figures.figure_checkpoints):
        with pytest.raises(ValueError, match=rf"^{draw.__name__} needs at least one estimator"):
            draw({}, items, "ci")
    mixed = [items[0], make_item(3, res=2 * RES)]
    with pytest.raises(ValueError, match=r"^item 1 is 128 x 128 px but the estimator works at 64 px: crop or resize") \
            as error:
        figures.figure_exemplar_vs_refined(estimator, mixed, "ci")
    assert "\n" not in str(error.value)
    official = NormalEstimator(estimator.coarse_net, estimator.refiner, {})    # resolution unknown: not checked
    assert figures.predict_stages(official, mixed[1:]).refined.shape == (1, 3, 2 * RES, 2 * RES)


def test_titles_say_what_is_drawn(items):
    runs = {"A1": tiny_estimator("A1", 1), "mine": tiny_estimator("A1", 2)}
    fig9 = figures.figure_architectures(runs, items, "ci")
    assert fig9._suptitle.get_text().splitlines()[0] == "Fig. 9 analogue: A1 (exemplar + image), mine"
    fig10 = figures.figure_variety(runs["A1"], items, "ci")
    assert fig10._suptitle.get_text().splitlines()[0] == (
        "Fig. 10 analogue: 2 faces, each with its refined normals and their shading")


def fake_benchmark(root, settings: dict) -> None:
    """A manifest.json whose splits name shards (never opened): enough for FaceNormalDataset's notes."""
    splits = {split: {"role": split.split("_")[0], "samples": 1, "identities": [0],
                      "shards": [{"file": f"{split}-00000.npz", "samples": 1, "sha256": ""}]}
              for split in ("lab_train", "lab_test", "wild_test")}
    root.mkdir()
    (root / "manifest.json").write_text(json.dumps({"format": "hffne-benchmark/1", "settings": settings,
                                                    "splits": splits}))


def test_dataset_notes_name_the_data_and_its_split(tmp_path, estimator):
    fake_benchmark(tmp_path / "synthetic", {"generator_version": 2})
    fake_benchmark(tmp_path / "photoface", {"source": "photoface"})
    assert figures.dataset_note(FaceNormalDataset(tmp_path / "synthetic", "lab_test")) == \
        "synthetic benchmark, lab_test (Photoface's role)"
    assert figures.dataset_note(FaceNormalDataset(tmp_path / "synthetic", "wild_test")) == \
        "synthetic benchmark, wild_test (FFHQ/CelebA/300-W's role)"
    assert figures.dataset_note(FaceNormalDataset(tmp_path / "photoface", "lab_train")) == "Photoface, lab_train"
    data = [make_item(seed) for seed in range(3)]
    picked = figures.items_at(data, [2, 0])
    assert [item[figures.DATA_KEY] for item in picked] == ["unnamed data set (list)"] * 2
    assert data[2][figures.DATA_KEY] == SPHERES                 # the dataset's own items are left as they were
    assert_titled(figures.figure_variety(estimator, picked, "ci"), data="unnamed data set (list)")
    no_note = [{k: v for k, v in data[0].items() if k != figures.DATA_KEY}]
    assert_titled(figures.figure_variety(estimator, no_note, "ci"), data="unnamed items")


def test_figure_losses_draws_one_panel_per_loss():
    log = pd.DataFrame({"seconds": [1.0, 2.0, 3.0], "loss_d": [0.7, 0.6, 0.5], "g_adversarial": [-1.0, 0.0, 1.0]},
                       index=pd.Index([10, 20, 30], name="iteration"))
    fig = figures.figure_losses(log, "coarse losses")
    assert [ax.get_title() for ax in fig.axes] == ["loss_d", "g_adversarial"]
    assert [ax.get_yscale() for ax in fig.axes] == ["log", "linear"]
    assert list(fig.axes[0].lines[0].get_xdata()) == [10, 20, 30] and fig._suptitle.get_text() == "coarse losses"
    assert len(figures.figure_losses(log, "d", ["loss_d"]).axes) == 1
    with pytest.raises(KeyError, match="the loss log has no column 'perceptual'"):
        figures.figure_losses(log, "x", ["perceptual"])


def test_save_figure_writes_png(tmp_path, estimator, items):
    path = figures.save_figure(figures.figure_variety(estimator, items[:1], "ci"), tmp_path / "a" / "fig.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def photo_folder(face_photo, tmp_path_factory):
    """blank.png (no face), face.png (a real face photo) and notes.png (not an image)."""
    folder = tmp_path_factory.mktemp("photos")
    save(np.full((200, 200, 3), 128, np.uint8), folder / "blank.png")
    save(face_photo, folder / "face.png")
    (folder / "notes.png").write_text("not an image\n")
    return folder


def test_load_real_faces_skips_bad_photos_with_one_line_each(photo_folder, capsys):
    photos = figures.load_real_faces(photo_folder, RES)
    assert [photo["name"] for photo in photos] == ["face"]
    assert photos[0][figures.DATA_KEY] == f"your photos, {photo_folder}"
    blank, notes = capsys.readouterr().out.splitlines()
    assert "blank.png" in blank and "no face found" in blank
    assert "notes.png" in notes and "not an image" in notes
    assert [photo["name"] for photo in figures.load_real_faces(photo_folder, RES, limit=1)] == ["face"]  # usable ones


def test_load_real_faces_with_no_face_left_is_one_line(photo_folder, tmp_path):
    for name in ("blank.png", "notes.png"):
        (tmp_path / name).write_bytes((photo_folder / name).read_bytes())
    with pytest.raises(ValueError, match="no photo left in .*: all 2 unreadable or without a face") as error:
        figures.load_real_faces(tmp_path, RES)
    assert "\n" not in str(error.value)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        figures.load_real_faces(tmp_path / "missing", RES)


def test_load_real_faces_reads_images_of_a_folder_laid_out_as_the_developers_real_faces(photo_folder, tmp_path,
                                                                                          monkeypatch):
    """../shared/data/real_faces (gpu_check.sh's REAL_FACES) holds images/ and official_hffne_normals/:
    its top level has no photo, and the normal maps beside them are no faces to predict."""
    (tmp_path / "images").mkdir()
    (tmp_path / "official_hffne_normals").mkdir()
    (tmp_path / "images" / "face.png").write_bytes((photo_folder / "face.png").read_bytes())
    (tmp_path / "official_hffne_normals" / "face.png").write_bytes((photo_folder / "blank.png").read_bytes())
    [photo] = figures.load_real_faces(tmp_path, RES)
    assert photo["name"] == "face" and photo[figures.DATA_KEY] == f"your photos, {tmp_path / 'images'}"
    (tmp_path / "empty" / "images").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"no images in .*empty/images: name a folder of photos"):
        figures.load_real_faces(tmp_path / "empty", RES)
    monkeypatch.setenv(figures.REAL_FACES_ENV, str(tmp_path))
    assert figures.real_faces_folder(None) == str(tmp_path) and figures.real_faces_folder("mine") == "mine"
    monkeypatch.delenv(figures.REAL_FACES_ENV)
    assert figures.real_faces_folder(None) is None


def test_real_faces_are_cropped_and_masked_as_hffne_predict(photo_folder, estimator):
    """Crop and mask (the face ellipse) are predict_image's, so are the refined normals inside it."""
    [photo] = figures.load_real_faces(photo_folder, RES)
    face = predict_image(estimator, load_image(photo_folder / "face.png")).faces[0]
    assert torch.equal(photo["mask"][0], torch.from_numpy(face.mask)) and 0 < face.mask.mean() < 1
    assert torch.equal(photo["rgb"], torch.from_numpy(face.crop).permute(2, 0, 1))
    refined = figures.predict_stages(estimator, [photo]).refined[0]
    torch.testing.assert_close(refined, face.normals * torch.from_numpy(face.mask))


def test_real_faces_figure_on_the_shared_photos(shared_dir, estimator):
    photos = figures.load_real_faces(shared_dir / "data" / "real_faces" / "images", RES, limit=2)
    assert len(photos) == 2 and photos[0]["rgb"].shape == (3, RES, RES) and photos[0]["mask"].shape == (1, RES, RES)
    fig = figures.figure_real_faces(estimator, photos, "ci")
    assert image_panels(fig) == 8
    assert_titled(fig, data=f"your photos, {shared_dir / 'data' / 'real_faces' / 'images'}")
