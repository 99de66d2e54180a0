"""The objective probe: the normals themselves optimised under a refinement objective."""
from __future__ import annotations

import math
import warnings

import pytest
import torch

from hffne_lib.checkpoint import load_coarse
from hffne_lib.conventions import normalize
from hffne_lib.evaluate import DETAIL_FREE
from hffne_lib.filters import low_pass
from hffne_lib.losses import PerceptualLoss, RefinementObjective
from hffne_lib.probe import (ALBEDO_FLOOR, EXEMPLAR, OVER_TRUE_ALBEDO, PHOTO, STARTS, TRUE_SHADING, Variant, final_table,
                             main, mean_errors, optimise_normals, probe_batch, probe_objectives, variant_images)
from hffne_lib.train import train_coarse
from hffne_lib.vgg import VGG19Features
from test_train import RandomFaces, tiny

warnings.filterwarnings("ignore", message="VGG19: no ImageNet weights")
RES = 64
LIGHT = torch.tensor([0.4, 0.2, 0.8])


def ridged_face():
    """A sphere-like shape with vertical ridges of period 4 px (the detail), its Lambertian image,
    and a smooth exemplar (the truth low-passed): truth, exemplar B x 3 x H x W; gray, mask 1 x 1 x H x W."""
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, RES), torch.linspace(-1, 1, RES), indexing="ij")
    mask = ((xs ** 2 + ys ** 2) < 0.8).float()[None, None]
    ridges = 0.3 * torch.sin(2 * math.pi * torch.arange(RES) / 4.0).expand(RES, RES)
    truth = normalize(torch.stack([0.4 * xs + ridges, 0.4 * ys, torch.ones_like(xs)])[None])
    exemplar = normalize(low_pass(truth, mask, 2.0) * mask + truth * (1 - mask))
    gray = (truth * LIGHT.view(1, 3, 1, 1)).sum(1, keepdim=True).clamp_min(0) * 0.8 + 0.1
    return truth, exemplar, gray, mask


def objective(**weights) -> RefinementObjective:
    return RefinementObjective(PerceptualLoss(VGG19Features("relu1_2")), **weights)


def test_the_shading_term_pulls_the_ridges_back_and_the_release_scale_keeps_the_exemplar():
    truth, exemplar, gray, mask = ridged_face()
    rgb, detail = gray.expand(-1, 3, -1, -1), mask
    start = mean_errors(exemplar, truth, mask, detail)
    shading = optimise_normals(objective(shading_weight=1.0), exemplar, rgb, gray, mask, truth, detail,
                               steps=100, eval_every=50, progress=False)
    faithful = optimise_normals(objective(), exemplar, rgb, gray, mask, truth, detail,
                                steps=100, eval_every=50, progress=False)
    assert list(shading["step"]) == [0, 50, 100]
    assert shading.iloc[0][["face", "detail", "fine"]].to_dict() == pytest.approx(start)
    assert shading.iloc[-1]["fine"] < 0.8 * start["fine"]
    assert shading.iloc[-1]["loss"] < shading.iloc[0]["loss"]
    assert abs(faithful.iloc[-1]["face"] - start["face"]) < 0.01  # eq. 10 at 1/65536 copies R


def test_the_integrability_term_takes_out_what_no_surface_has():
    """The truth is a height field's normals; per-pixel noise on it is mostly curl, which the term
    removes, pulling the normals back towards the truth; the term is weighted into the loss."""
    truth, _, gray, mask = ridged_face()
    noise = 0.15 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(0))
    exemplar = normalize(truth + noise * mask)
    rgb = gray.expand(-1, 3, -1, -1)
    start = mean_errors(exemplar, truth, mask, mask)
    curve = optimise_normals(objective(integrability_weight=1.0), exemplar, rgb, gray, mask, truth, mask,
                             steps=100, eval_every=100, progress=False)
    assert curve.iloc[-1]["face"] < 0.8 * start["face"]
    weighted = objective(integrability_weight=0.5)
    terms = weighted(exemplar, exemplar, rgb, gray, mask)
    assert weighted.terms == ["reconstruction", "perceptual", "integrability"] and terms.keys() == {"loss", *weighted.terms}
    assert terms["integrability"] > 0
    assert terms["loss"] == pytest.approx(float(terms["reconstruction"] + terms["perceptual"]
                                                + 0.5 * terms["integrability"]))


def test_bad_probe_settings_say_what_is_wrong():
    truth, exemplar, gray, mask = ridged_face()
    with pytest.raises(ValueError, match="steps >= 0"):
        optimise_normals(objective(), exemplar, gray.expand(-1, 3, -1, -1), gray, mask, truth, mask, steps=-1)
    with pytest.raises(ValueError, match="the split has 4"):
        probe_batch(ShadedFaces(), 5)


class ShadedFaces(RandomFaces):
    """RandomFaces with a "shading" and a constant "gray_albedo" of 2 whose product is the grey image."""

    def __init__(self):
        super().__init__(n=4, res=64)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = super().__getitem__(i)
        return {**item, "shading": item["gray"] * 0.5, "gray_albedo": torch.full_like(item["gray"], 2.0)}


def test_each_variant_image_is_what_its_name_says():
    batch = probe_batch(ShadedFaces(), 2)
    assert variant_images(batch, PHOTO) == (batch["rgb"], batch["gray"])
    for oracle in (TRUE_SHADING, OVER_TRUE_ALBEDO):
        rgb, gray = variant_images(batch, oracle)
        assert torch.allclose(gray, batch["shading"]) and torch.equal(rgb, gray.expand(-1, 3, -1, -1))
    batch["gray_albedo"][:, :, :4] = 0.0          # black hair: divided by the floor, not by zero
    _, gray = variant_images(batch, OVER_TRUE_ALBEDO)
    assert torch.allclose(gray[:, :, :4], batch["gray"][:, :, :4] / ALBEDO_FLOOR)
    with pytest.raises(ValueError, match="variant image must be"):
        Variant("typo", image="true albedo")


def test_probe_objectives_rows_start_from_one_exemplar_and_end_in_a_table(tmp_path):
    cfg = tiny(coarse_iters=2, checkpoint_every=2, coarse_milestones=())
    data = ShadedFaces()
    coarse_net, _ = load_coarse(train_coarse(cfg, tmp_path, dataset=data, progress=False), cfg.resolution)
    variants = [Variant("faithful"), Variant("oracle", {"shading_weight": 1.0}, image=TRUE_SHADING)]
    curves = probe_objectives(cfg, coarse_net, data, variants, images=2, steps=4, eval_every=2, progress=False)
    assert list(curves["variant"]) == [DETAIL_FREE] + ["faithful"] * 3 + ["oracle"] * 3
    assert list(curves["step"]) == [0, 0, 2, 4, 0, 2, 4]
    starts = curves[(curves["step"] == 0) & (curves["variant"] != DETAIL_FREE)][["face", "detail", "fine"]]
    assert starts.iloc[0].equals(starts.iloc[1])  # both variants start at the same exemplar
    assert curves["vgg19"].dropna().str.contains("random").all()
    table = final_table(curves)
    assert list(table.index) == [EXEMPLAR, "faithful", "oracle", DETAIL_FREE]
    assert list(table.columns) == ["face", "detail", "fine"]


def test_probe_from_the_detail_free_truth_needs_no_network_and_starts_at_the_reference():
    data = ShadedFaces()
    curves = probe_objectives(tiny(), None, data, [Variant("faithful")], images=2, steps=2, eval_every=2,
                              progress=False, start="detail-free")
    start = curves[(curves["variant"] == "faithful") & (curves["step"] == 0)].iloc[0]
    reference = curves[curves["variant"] == DETAIL_FREE].iloc[0]
    for region in ("face", "detail", "fine"):
        assert start[region] == pytest.approx(reference[region], abs=1e-3)
    assert reference["face"] > 0.1          # the detail is really missing from the start
    assert list(final_table(curves, STARTS["detail-free"]).index)[0] == STARTS["detail-free"]
    with pytest.raises(ValueError, match="start must be one of"):
        probe_objectives(tiny(), None, data, [Variant("faithful")], images=2, start="truth")
    with pytest.raises(ValueError, match="start 'exemplar' needs a coarse network"):
        probe_objectives(tiny(), None, data, [Variant("faithful")], images=2)


def test_command_line_refuses_bad_input_in_one_line_and_keeps_earlier_results(tmp_path):
    earlier = tmp_path / "probe"
    earlier.mkdir()
    (earlier / "curves.csv").write_text("kept")
    with pytest.raises(SystemExit, match=r"^hffne_lib.probe: .*curves.csv exists \(use --overwrite\)$"):
        main(["--run-dir", str(tmp_path), "--out", str(earlier)])
    assert (earlier / "curves.csv").read_text() == "kept"
    with pytest.raises(SystemExit, match=r"^hffne_lib.probe: .*latest.pt: no such checkpoint; train the coarse stage first"):
        main(["--preset", "ci", "--run-dir", str(tmp_path / "none"), "--out", str(tmp_path / "new")])
    with pytest.raises(SystemExit, match=r"^hffne_lib.probe: unknown config field 'colour'$"):
        main(["--run-dir", str(tmp_path), "--out", str(tmp_path / "new"), "--set", "colour=1"])
    with pytest.raises(SystemExit, match=r"^hffne_lib.probe: --run-dir is needed to start from the coarse exemplar"):
        main(["--out", str(tmp_path / "new")])
    assert not (tmp_path / "new").exists()
