"""Metrics on analytic cases: known rotations give known angles."""
from __future__ import annotations

import math

import pytest
import torch

from hffne_lib.metrics import (angular_error, evaluate_set, fine_band_error, image_errors, per_image_table,
                               summarize_errors)


def _rotate_about_x(normals: torch.Tensor, degrees: float) -> torch.Tensor:
    a = math.radians(degrees)
    rot = torch.tensor([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    return torch.einsum("ij,bjhw->bihw", rot, normals)


def _frontal(batch=1, size=8):
    n = torch.zeros(batch, 3, size, size)
    n[:, 2] = 1.0
    return n


@pytest.mark.parametrize("degrees", [0.0, 1.0, 10.0, 45.0, 90.0, 180.0])
def test_known_rotation_gives_known_angle(degrees):
    target = _frontal()
    err = angular_error(_rotate_about_x(target, degrees), target)
    assert torch.allclose(err, torch.full_like(err, degrees), atol=1e-3)


def test_unnormalised_prediction_is_measured_by_direction():
    target = _frontal()
    assert angular_error(3.0 * target, target).max() < 1e-3


def test_set_summary_mean_std_and_thresholds():
    target = _frontal(batch=2, size=4)
    pred = torch.cat([_rotate_about_x(target[:1], 10.0), _rotate_about_x(target[1:], 40.0)])
    mask = torch.ones(2, 1, 4, 4, dtype=torch.bool)
    mask[1, :, :2] = False  # image 2: half its pixels
    row = evaluate_set(pred, target, mask, name="toy")
    assert row.name == "toy" and row["images"] == 2
    assert row["mean"] == pytest.approx(25.0, abs=1e-3)       # mean of image means
    assert row["std"] == pytest.approx(15.0, abs=1e-3)        # std across images
    assert row["<20"] == pytest.approx(100 * 16 / 24, abs=1e-6)  # pixel share: 16 of 24 pixels
    assert row["<30"] == pytest.approx(row["<20"]) and row["<25"] == pytest.approx(row["<20"])


def test_thresholds_are_settable_and_masks_exclude_pixels():
    target = _frontal(size=2)
    pred = target.clone()
    pred[0, :, 0, 0] = torch.tensor([1.0, 0.0, 0.0])  # 90 degrees off
    mask = torch.ones(1, 1, 2, 2)
    row = evaluate_set(pred, target, mask, thresholds=(5.0, 95.0))
    assert row["<5"] == pytest.approx(75.0) and row["<95"] == pytest.approx(100.0)
    mask[0, 0, 0, 0] = 0
    assert evaluate_set(pred, target, mask)["mean"] == pytest.approx(0.0, abs=1e-3)


def test_per_image_table_and_empty_masks():
    target = _frontal(batch=2, size=2)
    per_image = image_errors(_rotate_about_x(target, 30.0), target, torch.ones(2, 1, 2, 2))
    table = per_image_table(per_image, names=["a", "b"])
    assert list(table.index) == ["a", "b"] and table["mean"].tolist() == pytest.approx([30.0, 30.0], abs=1e-3)
    with pytest.raises(ValueError, match="every mask is empty"):
        summarize_errors(image_errors(target, target, torch.zeros(2, 1, 2, 2)))


def _bumpy_surface(size=48, bump_degrees=20.0):
    """Frontal plane with a checker of ridges tilted +-bump_degrees about x (period 4 px)."""
    rows = torch.arange(size).view(size, 1).expand(size, size)
    sign = torch.where((rows // 2) % 2 == 0, 1.0, -1.0)
    tilt = torch.deg2rad(bump_degrees * sign)
    return torch.stack([torch.zeros_like(tilt), torch.sin(tilt), torch.cos(tilt)]).unsqueeze(0)


def test_fine_band_error_ignores_a_global_tilt_but_not_missing_detail():
    truth = _bumpy_surface()
    mask = torch.ones(1, 1, 48, 48, dtype=torch.bool)
    tilted = _rotate_about_x(truth, 25.0)   # right detail, wrong global shape
    smooth = _frontal(size=48)              # right global shape, no detail
    inner = (slice(None), slice(8, 40), slice(8, 40))  # away from the filter's border
    assert angular_error(tilted, truth)[inner].mean() == pytest.approx(25.0, abs=0.5)
    # a tilt also turns the detail vectors themselves (2 * sin(12.5 deg) of the bumps' size)
    assert fine_band_error(tilted, truth, mask, sigma=3.0)[inner].mean() < 4.0
    assert fine_band_error(smooth, truth, mask, sigma=3.0)[inner].mean() > 15.0
    assert fine_band_error(truth, truth, mask, sigma=3.0).max() < 1e-3


def test_image_errors_takes_precomputed_errors():
    target = _frontal(size=4)
    mask = torch.ones(1, 1, 4, 4)
    given = torch.full((1, 4, 4), 7.0)
    assert image_errors(target, target, mask, given)[0].tolist() == [7.0] * 16


@pytest.mark.parametrize("broken, name, problem", [
    ("pred", "prediction", "NaN or infinite at 1 of 16"), ("target", "ground truth", "zero-length normals at 1 of 16")])
def test_an_undefined_normal_inside_the_mask_is_refused_not_averaged(broken, name, problem):
    pred, target, mask = _frontal(size=4), _frontal(size=4), torch.ones(1, 1, 4, 4, dtype=torch.bool)
    {"pred": pred, "target": target}[broken][0, :, 1, 2] = float("nan") if broken == "pred" else 0.0
    with pytest.raises(ValueError, match=f"the {name} .*{problem} face pixels"):
        evaluate_set(pred, target, mask)
    mask[0, 0, 1, 2] = False   # outside the mask the same pixel is no concern
    assert evaluate_set(pred, target, mask)["mean"] == pytest.approx(0.0, abs=1e-3)
