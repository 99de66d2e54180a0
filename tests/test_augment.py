"""Relit and warped lab images for the coarse stage (beyond the paper)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hffne_lib.augment import heights_from_normals, relight_lab_batch, turn_faces, warp_faces, warp_lab_batch
from hffne_lib.checkpoint import load_checkpoint
from hffne_lib.config import get_config
from hffne_lib.conventions import normalize, transform_normals
from hffne_lib.metrics import angular_error
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
    relit, same_normal, same_mask = relight_lab_batch(gray, normal, albedo, mask, fraction=1.0)
    assert same_normal is normal and same_mask is mask          # not turned: max_yaw_deg = 0
    assert relit.shape == gray.shape and 0 <= relit.min() and relit.max() <= 1
    assert not torch.equal(relit[mask == 0], gray[mask == 0])  # a new background
    shading = relit / albedo
    light = fit_lighting(shading, normal, mask)
    model = (normal * light[:, :3, None, None]).sum(1, keepdim=True) + light[:, 3:, None, None]
    lit = mask.bool() & ((normal * light[:, :3, None, None]).sum(1, keepdim=True) > 0.05)
    assert lit.float().mean() > 0.3 and (model - shading)[lit].abs().max() < 0.05
    assert (light[:, :3].norm(dim=1) > 0.5).all()  # the light's strength is in [0.6, 1]
    assert torch.equal(relight_lab_batch(gray, normal, albedo, mask, fraction=0.0)[0], gray)
    with pytest.raises(ValueError, match=r"fraction of images in \[0, 1\], got 1.5"):
        relight_lab_batch(gray, normal, albedo, mask, fraction=1.5)
    with pytest.raises(ValueError, match=r"coarse_relight is a fraction of images in \[0, 1\], got -0.1"):
        get_config("ci", coarse_relight=-0.1)  # refused when the config is made, before any training


class LitFaces(RandomFaces):
    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = super().__getitem__(i)
        return {**item, "albedo": torch.full_like(item["rgb"], 0.6)}


@pytest.mark.parametrize("option", ["coarse_relight", "coarse_warp"])
def test_coarse_training_sees_the_relit_or_warped_images(tmp_path, option):
    generators = {}
    for fraction in (0.0, 1.0):
        cfg = tiny(coarse_iters=2, checkpoint_every=2, coarse_milestones=(), **{option: fraction})
        path = train_coarse(cfg, tmp_path / str(fraction), dataset=LitFaces(), progress=False)
        generators[fraction] = load_checkpoint(path, "coarse")["models"]["generator"]
    assert not states_equal(generators[0.0], generators[1.0])


def test_a_killed_relit_turned_and_warped_coarse_run_resumes_to_the_uninterrupted_numbers(tmp_path):
    """Both draw from the global torch RNG, which the checkpoint restores."""
    cfg = tiny(coarse_relight=0.5, coarse_relight_yaw=30.0, coarse_warp=0.5, coarse_milestones=())
    train_coarse(cfg, tmp_path / "full", dataset=LitFaces(), progress=False)
    train_coarse(cfg, tmp_path / "killed", dataset=LitFaces(), progress=False, stop_after=cfg.coarse_iters - 1)
    train_coarse(cfg, tmp_path / "killed", dataset=LitFaces(), progress=False)
    full, resumed = (load_checkpoint(tmp_path / run / "coarse" / "latest.pt", "coarse") for run in ("full", "killed"))
    assert full["iteration"] == resumed["iteration"] == cfg.coarse_iters
    assert all(states_equal(full["models"][k], resumed["models"][k]) for k in full["models"])


def height_field_normals(height: torch.Tensor) -> torch.Tensor:
    """Normals of z = height (B x 1 x H x W, pixel units) by central differences, x right, y up."""
    d_row, d_col = torch.gradient(height[:, 0], dim=(1, 2))
    return normalize(torch.stack([-d_col, d_row, torch.ones_like(d_col)], dim=1))


def bumps(size=48):
    """Two Gaussian bumps of unlike sizes off the centre (no symmetry a wrong turn could hide in)."""
    row, col = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                              indexing="ij")
    height = 8 * torch.exp(-((row - 18) ** 2 + (col - 20) ** 2) / 60) + 4 * torch.exp(-((row - 30) ** 2 + (col - 31) ** 2) / 20)
    return height[None, None]


@pytest.mark.parametrize("roll, mirror, zoom", [(30.0, False, 1.0), (-90.0, True, 1.0), (12.0, True, 1.2)])
def test_warped_normals_are_the_normals_of_the_warped_surface(roll, mirror, zoom):
    """Warping a height field's normals equals taking the normals of the warped height field (its
    heights scaled with the zoom, as a face's are); normals carried along without turning are not."""
    height = bumps()
    mask = torch.zeros_like(height)
    mask[..., 8:-8, 8:-8] = 1
    args = (torch.tensor([roll]), torch.tensor([mirror]), torch.tensor([zoom]), torch.tensor([[0.04, -0.03]]))
    warped_height, warped_normals, warped_mask = warp_faces(height, height_field_normals(height), mask, *args)
    expected = height_field_normals(zoom * warped_height)
    inside = warped_mask.bool()[:, 0]
    assert 0.6 * mask.sum() < inside.sum()
    assert angular_error(warped_normals, expected)[inside].mean() < 1.0
    moved_only = transform_normals(warped_normals, torch.linalg.inv(_turn(roll, mirror)))
    assert angular_error(moved_only, expected)[inside].mean() > 5.0
    identity = warp_faces(height, height_field_normals(height), mask, torch.zeros(1), torch.tensor([False]),
                          torch.ones(1), torch.zeros(1, 2))
    assert angular_error(identity[1], height_field_normals(height))[mask[:, 0].bool()].max() < 1e-3
    assert torch.allclose(identity[0], height, atol=1e-5) and torch.equal(identity[2], mask)
    assert torch.equal(warped_mask.unique(), torch.tensor([0.0, 1.0]))
    assert torch.allclose(warped_normals.norm(dim=1)[warped_mask[:, 0].bool()], torch.ones(1), atol=1e-5)


def _turn(roll: float, mirror: bool) -> torch.Tensor:
    angle = torch.deg2rad(torch.tensor(roll))
    rotation = torch.tensor([[torch.cos(angle), -torch.sin(angle)], [torch.sin(angle), torch.cos(angle)]])
    turn = rotation @ torch.diag(torch.tensor([-1.0 if mirror else 1.0, 1.0]))
    return torch.block_diag(turn, torch.ones(1, 1))[None]                  # the same map in 3-D


def test_roll_turns_counter_clockwise_as_seen_and_shift_moves_right_and_up():
    """A spot right of the centre goes to the top under a +90 degree roll; a shift of (0.125, 0.25)
    moves it 4 pixels right and 8 up (rows grow down)."""
    image = torch.zeros(1, 1, 32, 32)
    image[..., 15:17, 23:25] = 1.0
    mask, normal = torch.ones_like(image), normalize(torch.ones(1, 3, 32, 32))
    peak = lambda out: divmod(int(out[0].flatten().argmax()), 32)
    rolled = warp_faces(image, normal, mask, torch.tensor([90.0]), torch.tensor([False]), torch.ones(1), torch.zeros(1, 2))
    shifted = warp_faces(image, normal, mask, torch.zeros(1), torch.tensor([False]), torch.ones(1), torch.tensor([[0.125, 0.25]]))
    assert peak(rolled) in {(7, 15), (7, 16), (8, 15), (8, 16)}
    assert peak(shifted) == (7, 27) and shifted[0][..., 7:9, 27:29].min() > 0.99


def test_a_quarter_turn_takes_x_to_y():
    normals = torch.tensor([1.0, 0.0, 0.5]).view(1, 3, 1, 1)
    turned = transform_normals(normals, torch.tensor([[[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]]))
    assert torch.allclose(turned.flatten(), torch.tensor([0.0, 1.0, 0.5]))


def test_warp_fraction_zero_changes_nothing_and_a_bad_fraction_is_refused():
    gray, normal, _, mask = bumpy_batch()
    torch.manual_seed(0)
    out = warp_lab_batch(gray, normal, mask, 0.0)
    assert all(torch.equal(a, b) for a, b in zip(out, (gray, normal, mask)))
    torch.manual_seed(0)
    warped = warp_lab_batch(gray, normal, mask, 1.0)
    assert not torch.equal(warped[2], mask) and warped[2].dtype == mask.dtype
    with pytest.raises(ValueError, match=r"coarse_warp is a fraction of images in \[0, 1\], got -0.1"):
        warp_lab_batch(gray, normal, mask, -0.1)
    with pytest.raises(ValueError, match=r"coarse_warp is a fraction of images in \[0, 1\], got 2"):
        get_config("ci", coarse_warp=2)  # refused when the config is made, before any training


def disc(size=48, radius=16):
    row, col = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                              indexing="ij")
    return (((row - size / 2) ** 2 + (col - size / 2) ** 2) < radius ** 2).float()[None, None]


def test_heights_from_normals_recover_a_height_field():
    height = bumps()
    mask = torch.ones_like(height)
    recovered = heights_from_normals(height_field_normals(height), mask)
    expected = height - height.mean()
    assert (recovered - expected).abs().mean() < 0.05 * height.max()
    assert recovered.mean().abs() < 1e-4


def test_a_turned_plane_keeps_one_normal_turned_by_the_yaw():
    """A plane tilted towards the image right, z = -0.3 x, on a disc: its single normal turns about
    the vertical axis by the yaw (x' = cos x + sin z), and its pixels stay one plane's."""
    mask = disc()
    normal = normalize(torch.tensor([0.3, 0.0, 1.0]).view(1, 3, 1, 1).expand(1, 3, 48, 48) * mask)
    turned, _, turned_mask = turn_faces(normal, torch.ones_like(mask), mask, torch.tensor([20.0]))
    angle = torch.deg2rad(torch.tensor(20.0))
    n = normalize(torch.tensor([0.3, 0.0, 1.0]).view(1, 3, 1, 1))[0, :, 0, 0]
    expected = torch.stack([torch.cos(angle) * n[0] + torch.sin(angle) * n[2], n[1],
                            -torch.sin(angle) * n[0] + torch.cos(angle) * n[2]])
    inside = turned_mask[0, 0].bool()
    assert inside.sum() > 0.8 * mask.sum()
    assert torch.allclose(turned[0, :, inside].T, expected.expand(int(inside.sum()), 3), atol=1e-5)


def test_turning_moves_the_front_right_hides_the_far_side_and_zero_changes_little():
    """A bump on a disc: under a positive yaw its top moves to the image right and the face covers
    fewer pixels, all facing the camera; at yaw 0 the normals and albedo come back within resampling
    error."""
    mask = disc()
    height = bumps() * mask
    normal = height_field_normals(height) * mask
    albedo = torch.linspace(0, 1, 48).view(1, 1, 1, 48).expand(1, 1, 48, 48).contiguous()
    same, same_albedo, same_mask = turn_faces(normal, albedo, mask, torch.zeros(1))
    inside = same_mask[0, 0].bool() & mask[0, 0].bool()
    interior = inside & (F.max_pool2d(1 - mask, 3, 1, 1)[0, 0] == 0)         # off the disc's rim
    # each pixel averages its 4 sub-samples: a slight blur, 0.4 degrees on this steep bump (about 8
    # degrees per pixel); keeping one sub-sample, a quarter pixel off the centre, gave 1.7
    assert inside.sum() >= 0.97 * mask.sum() and angular_error(same, normal)[0][interior].mean() < 0.6
    assert (same_albedo - albedo)[0, 0][inside].abs().mean() < 0.01
    turned, turned_albedo, turned_mask = turn_faces(normal, albedo, mask, torch.tensor([30.0]))
    top_column = lambda images: int(images[0, 0].flatten().argmax() % 48)
    assert top_column(heights_from_normals(turned, turned_mask)) > top_column(height) + 2
    assert (turned[:, 2][turned_mask[:, 0].bool()] > 0).all()
    assert turned_mask.sum() < mask.sum()


def test_relit_faces_turned_out_of_plane_carry_their_turned_normals():
    gray, normal, albedo, mask = bumpy_batch()
    torch.manual_seed(0)
    relit, turned, turned_mask = relight_lab_batch(gray, normal, albedo, mask, fraction=1.0, max_yaw_deg=30.0)
    assert not torch.equal(turned, normal) and turned_mask.shape == mask.shape
    assert torch.allclose(turned.norm(dim=1)[turned_mask[:, 0].bool()], torch.ones(1), atol=1e-5)
    with pytest.raises(ValueError, match=r"coarse_relight_yaw is a largest yaw in degrees, in \[0, 60\], got 90"):
        get_config("ci", coarse_relight=0.5, coarse_relight_yaw=90)
    with pytest.raises(ValueError, match="coarse_relight_yaw turns only relit images; set coarse_relight > 0 too"):
        get_config("ci", coarse_relight_yaw=20)
