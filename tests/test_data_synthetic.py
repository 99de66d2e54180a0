"""The synthetic face generator: rasteriser, face models, detail, lab captures, determinism."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from hffne_lib.data import BenchmarkConfig, SurreyFaceModel, make_identity, photometric_stereo, plan_splits, render_sample
from hffne_lib.data.procedural import procedural_face
from hffne_lib.data.raster import rasterize, render_gbuffer, rotation_matrix
from hffne_lib.data.sfm import SFM_ENV, SFM_LANDMARK_VERTICES
from hffne_lib.data.synthetic import IDENTITY_STREAM, PLAN_STREAM, SAMPLE_STREAM, random_stream
from hffne_lib.data.texture import _blur
from hffne_lib.metrics import angular_error

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sfm_file(tmp_path_factory) -> Path:
    """The Surrey Face Model from $HFFNE_SFM_PATH or the shared folder; where neither exists, a
    stand-in npz with the same fields built from a procedural face (so nothing is skipped)."""
    shared = Path(os.environ.get("HFFNE_SHARED", REPO.parent / "shared")) / "data/sfm/sfm_shape_3448.npz"
    for candidate in (os.environ.get(SFM_ENV), shared):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    shape = procedural_face(np.random.default_rng(0), resolution=70)
    v = shape.mesh.vertices.numpy()
    assert len(v) > max(SFM_LANDMARK_VERTICES.values())
    basis = np.linalg.qr(np.random.default_rng(1).standard_normal((v.size, 5)))[0]
    path = tmp_path_factory.mktemp("sfm") / "fake_sfm.npz"
    np.savez(path, mean=v, basis=basis.astype(np.float32), eigenvalues=np.full(5, 100.0, np.float32),
             triangles=shape.mesh.faces.numpy().astype(np.int32), texcoords=shape.mesh.uvs.numpy(),
             expressions=shape.expressions.numpy().reshape(2, -1), expression_names=np.array(["smile", "brow_raise"]))
    return path


def _angle(a, b):
    return angular_error(a[None], b[None])[0]


def test_rasterizer_covers_and_z_tests():
    # a far square (two triangles, depth 0) and a near triangle (depth 1) over its left half
    screen = torch.tensor([[2, 2, 0], [14, 2, 0], [2, 14, 0], [14, 14, 0], [0, 0, 1], [8, 0, 1], [0, 16, 1]],
                          dtype=torch.float32)
    faces = torch.tensor([[0, 1, 2], [1, 3, 2], [4, 6, 5]])
    frags = rasterize(screen, faces, 16, 16, cull_backfaces=False)
    square = frags.face_index[2:14, 2:14]
    assert (frags.face_index[:, 15] == -1).all() and (frags.face_index[15, 9:] == -1).all()
    assert (square >= 0).all()
    assert (frags.face_index[3:5, 2:4] == 2).all()                  # the near triangle wins
    assert (frags.face_index[10:14, 10:14] != 2).all()
    assert torch.allclose(frags.bary.sum(-1)[frags.mask], torch.ones(int(frags.mask.sum())), atol=1e-5)
    # the square is clockwise seen by the camera (back-facing), the near triangle counter-clockwise
    culled = rasterize(screen, faces, 16, 16, cull_backfaces=True)
    assert (culled.face_index[3:5, 2:4] == 2).all() and (culled.face_index[10:14, 10:14] == -1).all()


@pytest.mark.parametrize("geometry", ["procedural", "sfm"])
def test_frontal_face_follows_the_normal_conventions(geometry, sfm_file):
    rng = np.random.default_rng(3)
    shape = procedural_face(rng) if geometry == "procedural" else SurreyFaceModel(sfm_file).sample(rng)
    g = render_gbuffer(shape.mesh, rotation_matrix(0, 0), 64)
    n, m = g.normal, g.mask[0]
    cols = torch.arange(64).expand(64, 64)
    rows, face_rows = cols.T, m.any(1).nonzero()
    eighth = int(face_rows.max() - face_rows.min()) // 8
    forehead = n[1][m & (rows < face_rows.min() + eighth)].mean()
    chin = n[1][m & (rows > face_rows.max() - eighth)].mean()
    assert n[0][m & (cols < 16)].mean() < -0.3 and n[0][m & (cols >= 48)].mean() > 0.3   # x right
    assert chin < -0.3 and forehead > chin + 0.4                                       # y up
    assert (n[2][m] >= 0).all() and n[2][m].mean() > 0.6                               # z to camera
    nearest = [int(render_gbuffer(shape.mesh, rotation_matrix(yaw, 0), 64).depth.flatten().argmax()) % 64
               for yaw in (-25, 0, 25)]
    assert nearest[0] + 3 < nearest[1] < nearest[2] - 3                                # yaw > 0 looks right


@pytest.mark.parametrize("role", ["lab", "wild", "scans"])
def test_render_is_deterministic_and_well_formed(role):
    a = render_sample(make_identity(7, role, 0, 48), role, 2, 0, 48)
    b = render_sample(make_identity(7, role, 0, 48), role, 2, 0, 48)
    other = render_sample(make_identity(7, role, 1, 48), role, 2, 0, 48)
    for key, value in a.items():
        assert torch.equal(torch.as_tensor(value), torch.as_tensor(b[key])), key
    assert not torch.equal(a["normal_exact"], other["normal_exact"])
    mask = a["mask"]
    assert mask.dtype == torch.bool and 0.2 < mask.float().mean() < 0.9
    for key in ("normal_exact", "normal_base") + (("normal",) if role == "lab" else ()):
        length = a[key].norm(dim=0, keepdim=True)
        assert torch.allclose(length[mask], torch.ones(int(mask.sum())), atol=1e-4), key
        assert (a[key] * ~mask == 0).all(), key
    image = a["images"] if role == "lab" else a["rgb"]
    assert image.min() >= 0 and image.max() <= 1 and image.std() > 0.05
    assert torch.equal(torch.round(image * 255) / 255, image)                   # 8-bit values


def test_detail_is_in_the_ground_truth_where_the_detail_mask_says():
    for identity in range(3):
        sample = render_sample(make_identity(identity, "wild", 0, 96), "wild", 0, 0, 96)
        detail, mask = sample["detail_mask"][0], sample["mask"][0]
        assert detail.sum() > 50 and not (detail & ~mask).any()
        diff = _angle(sample["normal_exact"], sample["normal_base"])
        # degrees at 96 px (~7 at 256 px); a bearded face's wide detail region averages less (1.6)
        assert diff[detail].mean() > 1.5
        assert diff[detail].mean() > 2.5 * diff[mask & ~detail].mean()
        smooth = render_sample(make_identity(identity, "wild", 0, 96), "wild", 0, 0, 96, detail=False)
        assert torch.allclose(smooth["normal_exact"], sample["normal_base"], atol=1e-5)


def test_lab_photometric_stereo_matches_the_exact_normals():
    errors, noiseless = [], []
    for identity in range(4):
        person = make_identity(identity, "lab", 0, 64)
        s = render_sample(person, "lab", 0, 0, 64)
        clean = render_sample(person, "lab", 0, 0, 64, lab_specular=0.0, lab_noise=0.0)
        m = s["mask"][0]
        errors.append(_angle(s["normal"], s["normal_exact"])[m].mean())
        noiseless.append(_angle(clean["normal"], clean["normal_exact"])[m].mean())
        assert s["images"].shape == (4, 64, 64) and s["lights"].shape == (4, 3)
        again, _ = photometric_stereo(clean["images"], clean["lights"], clean["mask"])
        assert torch.equal(again, clean["normal"])
    assert max(noiseless) < 2.0 and max(errors) < 6.0 and np.mean(errors) > np.mean(noiseless)


def test_sfm_identities_have_expressions_and_detail(sfm_file):
    model = SurreyFaceModel(sfm_file)
    rng = np.random.default_rng(0)
    a, b = model.sample(rng), model.sample(rng)
    assert a.mesh.vertices.shape == model.mean.shape and not torch.equal(a.mesh.vertices, b.mesh.vertices)
    weights = torch.zeros(len(model.expressions))
    weights[0] = 1.0
    assert (a.posed(weights).vertices - a.mesh.vertices).abs().max() > 1.0
    assert all(0 <= u <= 1 and 0 <= v <= 1 for u, v in a.landmarks_uv.values())
    sample = render_sample(make_identity(3, "wild", 0, 64, "sfm", model), "wild", 0, 0, 64)
    assert (sample["normal_exact"].norm(dim=0, keepdim=True) > 0.5).equal(sample["mask"])   # unit inside, 0 out
    assert sample["detail_mask"].sum() > 10
    with pytest.raises(ValueError, match="Surrey Face Model"):
        make_identity(3, "wild", 0, 64, "sfm", None)


def test_splits_share_no_identity():
    config = BenchmarkConfig(lab_identities=20, wild_identities=30, scan_identities=5)
    plan = plan_splits(config)
    ids = {split: {i for i, _ in items} for split, items in plan.items()}
    names = list(ids)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not ids[a] & ids[b], (a, b)
    assert len(ids["lab_test"]) == 4 and len(ids["wild_test"]) == 6 and len(ids["scans"]) == 5
    assert len(plan["lab_train"]) == 16 * config.lab_captures
    assert plan_splits(config) == plan and plan_splits(BenchmarkConfig(lab_identities=20, seed=1))["lab_test"] != plan["lab_test"]


def test_each_use_of_the_seed_has_its_own_stream():
    """The split plan drew the very numbers of identity 1 ([seed, 1] and [seed, 1, 0] are one stream)."""
    keys = [(PLAN_STREAM,), (IDENTITY_STREAM, 0), (IDENTITY_STREAM, 1), (SAMPLE_STREAM, 1, 0), (SAMPLE_STREAM, 1, 1),
            (SAMPLE_STREAM, 0, 1)]
    firsts = [random_stream(7, *key).integers(2**62, size=2).tolist() for key in keys]
    assert len({tuple(f) for f in firsts}) == len(keys)
    assert random_stream(7, IDENTITY_STREAM, 1).random() == random_stream(7, IDENTITY_STREAM, 1).random()
    assert random_stream(7, PLAN_STREAM).random() != random_stream(8, PLAN_STREAM).random()


def test_texture_blur_keeps_its_mass_and_does_not_wrap_round_uv_space():
    """A beard drawn at the texture's bottom edge (v = 1) must not appear at its top (the forehead)."""
    texture = np.zeros((64, 64))
    texture[-3:, 20:40] = 1.0
    blurred = _blur(texture, 4.0)
    assert np.abs(blurred[:8]).max() < 1e-9
    assert blurred[-1, 30] > 0.3 and blurred.sum() == pytest.approx(texture.sum(), rel=0.02)
    inside = np.zeros((64, 64))
    inside[32, 32] = 1.0
    assert _blur(inside, 2.0).sum() == pytest.approx(1.0, abs=1e-6)     # far from borders: a plain Gaussian


@pytest.mark.parametrize("content, problem", [
    (b"PK\x03\x04 cut short", "not a readable npz"), (b"mean 1 2 3", "not a readable npz \\(ValueError: This file contains pickled"),
    (None, "not a Surrey Face Model npz, it lacks basis, eigenvalues, triangles, texcoords, expressions")])
def test_a_file_that_is_not_the_surrey_face_model_is_a_one_line_error(tmp_path, content, problem):
    path = tmp_path / "sfm.npz"
    if content is None:
        np.savez(path, mean=np.zeros((3, 3)))
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=f"^{path}: {problem}") as error:
        SurreyFaceModel(path)
    assert "\n" not in str(error.value)
