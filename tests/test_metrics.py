"""Metrics on analytic cases: known rotations give known angles."""
from __future__ import annotations

import math

import pytest
import torch

from hffne_lib.metrics import angular_error, evaluate_set, image_errors, per_image_table, summarize_errors


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
