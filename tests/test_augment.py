"""Relit lab images for the coarse stage (beyond the paper)."""
from __future__ import annotations

import pytest
import torch

from hffne_lib.augment import relight_lab_batch
from hffne_lib.checkpoint import load_checkpoint
from hffne_lib.config import get_config
from hffne_lib.conventions import normalize
from hffne_lib.losses import fit_lighting
from hffne_lib.train import train_coarse
from test_train import RandomFaces, states_equal, tiny


def bumpy_batch(count=4, size=32):
    torch.manual_seed(1)
    normal = normalize(torch.randn(count, 3, size, size) * 0.2 + torch.tensor([0, 0, 1.0]).view(1, 3, 1, 1))
    mask = torch.zeros(count, 1, size, size)
    mask[..., 4:-4, 4:-4] = 1
    albedo = 0.3 + 0.5 * torch.rand(count, 1, 1, 1).expand(count, 1, size, size)
    gray = torch.full((count, 1, size, size), 0.05)
    return gray, normal, albedo, mask


def test_relit_faces_are_lambertian_in_their_normals_and_the_rest_is_untouched():
    gray, normal, albedo, mask = bumpy_batch()
    torch.manual_seed(0)
    relit = relight_lab_batch(gray, normal, albedo, mask, fraction=1.0)
    assert relit.shape == gray.shape and 0 <= relit.min() and relit.max() <= 1
    assert not torch.equal(relit[mask == 0], gray[mask == 0])  # a new background
    shading = relit / albedo
    light = fit_lighting(shading, normal, mask)
    model = (normal * light[:, :3, None, None]).sum(1, keepdim=True) + light[:, 3:, None, None]
    lit = mask.bool() & ((normal * light[:, :3, None, None]).sum(1, keepdim=True) > 0.05)
    assert lit.float().mean() > 0.3 and (model - shading)[lit].abs().max() < 0.05
    assert (light[:, :3].norm(dim=1) > 0.5).all()  # the light's strength is in [0.6, 1]
    assert torch.equal(relight_lab_batch(gray, normal, albedo, mask, fraction=0.0), gray)
    with pytest.raises(ValueError, match=r"fraction of images in \[0, 1\], got 1.5"):
        relight_lab_batch(gray, normal, albedo, mask, fraction=1.5)
    with pytest.raises(ValueError, match=r"coarse_relight is a fraction of images in \[0, 1\], got -0.1"):
        get_config("ci", coarse_relight=-0.1)  # refused when the config is made, before any training


class LitFaces(RandomFaces):
    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = super().__getitem__(i)
        return {**item, "albedo": torch.full_like(item["rgb"], 0.6)}


def test_coarse_training_sees_the_relit_images(tmp_path):
    generators = {}
    for fraction in (0.0, 1.0):
        cfg = tiny(coarse_iters=2, checkpoint_every=2, coarse_milestones=(), coarse_relight=fraction)
        path = train_coarse(cfg, tmp_path / str(fraction), dataset=LitFaces(), progress=False)
        generators[fraction] = load_checkpoint(path, "coarse")["models"]["generator"]
    assert not states_equal(generators[0.0], generators[1.0])
