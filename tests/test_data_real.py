"""Real-data preparation: image loading, face crops and back, Photoface folders, scans."""
from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from hffne_lib.conventions import from_uint8_image
from hffne_lib.data import (LIGHT_FIELDS, FaceNormalDataset, Mesh, PhotofaceLayout, SurfaceColour, crop_face,
                            detect_faces, face_mask, load_image, load_photoface_capture, make_identity,
                            photometric_stereo, prepare_face_folder, prepare_photoface, prepare_scan_folder,
                            prepare_scans, prepare_wild_photos, read_coloured_mesh, read_mesh, render_mesh_normals,
                            render_sample, render_scan, uncrop)
from hffne_lib.data.faces import FaceBox
from hffne_lib.data.images import save_image
from hffne_lib.data.raster import render_gbuffer, rotation_matrix
from hffne_lib.files import OutputExistsError
from hffne_lib.metrics import angular_error
from scan_files import write_textured_face

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def face_photo() -> np.ndarray:
    """A real face (shared/data/real_faces/images/182716.png via HFFNE_SHARED or ../shared) or,
    where the shared folder is absent, a synthetic render the cascade finds: wild identity 0 of the
    benchmark's generator version 3 (of identities 0-11, the cascade finds 0, 3, 8, 10 and 11; it
    found 9, used before, on version 2 only)."""
    real = Path(os.environ.get("HFFNE_SHARED", REPO.parent / "shared")) / "data/real_faces/images/182716.png"
    if real.is_file():
        return load_image(real)
    return render_sample(make_identity(0, "wild", 0, 256), "wild", 0, 0, 256)["rgb"].permute(1, 2, 0).numpy()


# ---------------------------------------------------------------- load_image

@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".tif", ".bmp"])
def test_load_image_formats(tmp_path, suffix):
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[:, :10] = (200, 30, 10)
    rgb[:, 20:] = (10, 40, 220)
    save_image(tmp_path / f"a{suffix}", rgb)
    image = load_image(tmp_path / f"a{suffix}")
    assert image.shape == (20, 30, 3) and image.dtype == np.float32
    error = np.abs(image * 255 - rgb)
    if suffix in (".jpg", ".webp"):                        # lossy: colours kept away from the edges
        assert error[:, [1, 2, 27, 28]].max() < 12 and error.mean() < 6
    else:
        assert error.max() < 0.5


def test_load_image_depths_and_channels(tmp_path):
    grey16 = (np.arange(12 * 16).reshape(12, 16) * 300).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "g16.png"), grey16)
    image = load_image(tmp_path / "g16.png")
    assert image.shape == (12, 16, 3) and np.allclose(image[..., 1], grey16 / 65535.0)
    rgba = np.dstack([np.full((5, 5, 3), (255, 0, 0), np.uint8), np.full((5, 5), 7, np.uint8)])
    cv2.imwrite(str(tmp_path / "rgba.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    assert np.allclose(load_image(tmp_path / "rgba.png")[0, 0], (1, 0, 0))


def test_load_image_bad_inputs_give_one_line_errors(tmp_path):
    save_image(tmp_path / "ok.jpg", np.full((32, 32, 3), 128, np.uint8))
    save_image(tmp_path / "ok.png", np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.png").write_text("not an image at all")
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "ok.jpg").read_bytes()[:-40])
    (tmp_path / "cut.png").write_bytes((tmp_path / "ok.png").read_bytes()[:-200])
    huge = (tmp_path / "ok.png").read_bytes()                       # a header declaring 60000 x 60000 pixels
    ihdr = b"IHDR" + (60000).to_bytes(4, "big") * 2 + huge[24:29]
    (tmp_path / "huge.png").write_bytes(huge[:12] + ihdr + zlib.crc32(ihdr).to_bytes(4, "big") + huge[33:])
    cv2.imwrite(str(tmp_path / "nan.tiff"), np.full((8, 8), np.nan, np.float32))
    cases = {"missing.png": "no such file", "empty.png": "empty file", "notes.png": "not an image",
             "cut.jpg": "truncated JPEG", "cut.png": "truncated or corrupt PNG", "huge.png": "the decoder refuses",
             "nan.tiff": "NaN or infinite"}
    for name, problem in cases.items():
        with pytest.raises(ValueError) as error:
            load_image(tmp_path / name)
        message = str(error.value)
        assert name in message and problem in message and "\n" not in message, message
    # data after the end-of-image marker (a phone's motion photo) is no truncation
    (tmp_path / "motion.jpg").write_bytes((tmp_path / "ok.jpg").read_bytes() + b"\x00\x00\x00\x18ftypmp42" + bytes(999))
    assert np.array_equal(load_image(tmp_path / "motion.jpg"), load_image(tmp_path / "ok.jpg"))


# ---------------------------------------------------------------- faces

def test_cascade_finds_the_face(face_photo):
    boxes = detect_faces(face_photo)
    assert boxes, "no face found"
    box = boxes[0]
    h, w = face_photo.shape[:2]
    assert box.w > 0.3 * w and abs(box.x + box.w / 2 - w / 2) < 0.2 * w and abs(box.y + box.h / 2 - h / 2) < 0.25 * h
    assert all(a.area >= b.area for a, b in zip(boxes, boxes[1:]))
    assert detect_faces(np.full((120, 160, 3), 0.5, np.float32)) == []


def test_crop_follows_the_protocol_and_uncrop_inverts_it():
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.uniform(0, 1, (300, 400, 3)).astype(np.float32), (0, 0), 3)
    box = FaceBox(150.0, 80.0, 100.0, 120.0)
    crop, transform = crop_face(image, box, size=128, scale=1.2)
    assert crop.shape == (128, 128, 3)
    # the enlarged square (side 144 centred on the box) maps onto the whole crop
    corners = transform.matrix @ np.array([[128.0, 200.0 - 72.0 + 144.0], [68.0, 140.0 - 72.0 + 144.0], [1, 1]])
    assert np.allclose(corners[:, 0], (0, 0)) and np.allclose(corners[:, 1], (128, 128))
    back = uncrop(crop, transform, image.shape)
    assert back.shape == image.shape
    inside = np.zeros(image.shape[:2], bool)
    inside[72:204, 132:268] = True                        # well inside the cropped square
    assert np.abs(back - image)[inside].mean() < 0.01
    assert (back[:, :100] == 0).all()                     # outside the crop: nothing
    single = uncrop(crop[..., 0], transform, image.shape[:2])
    assert single.shape == image.shape[:2]


def test_a_crop_samples_where_its_transform_says_and_is_low_passed_when_it_shrinks():
    """Pixel centres of the crop land on the original coordinates the transform gives (they sat
    half a pixel and more off), and a 4x smaller crop of noise is smooth (it sampled every 4th pixel)."""
    width = 1024
    ramp = np.tile(np.arange(width, dtype=np.float32) + 0.5, (width, 1))[..., None].repeat(3, axis=2)  # value = x
    box = FaceBox(256.0, 256.0, 512.0 / 1.2, 512.0 / 1.2)                 # a 512 px square -> 128 px: scale 1/4
    crop, transform = crop_face(ramp, box, size=128)
    expected = (np.arange(128) + 0.5 - transform.tx) / transform.scale    # original x of each crop pixel centre
    assert transform.scale == pytest.approx(0.25) and np.abs(crop[64, :, 0] - expected).max() < 0.05   # was 1.5
    noise = np.random.default_rng(0).uniform(0, 1, (width, width, 3)).astype(np.float32)
    assert crop_face(noise, box, size=128)[0].std() < 0.35 * noise.std()    # was 0.55


@pytest.mark.parametrize("box", [FaceBox(900.0, 600.0, 500.0, 450.0), FaceBox(-200.0, -150.0, 700.0, 700.0),
                                 FaceBox(1100.0, 20.0, 400.0, 400.0)], ids=["inside", "past_top_left", "past_right"])
def test_a_shrinking_crop_blurs_only_what_it_reads_with_the_same_result(box):
    """The low-pass is applied to the window the crop reads (plus the kernel's reach), not the whole
    photo: the crop equals the whole photo blurred, then warped, also where the box leaves the photo."""
    image = np.random.default_rng(1).integers(0, 256, (900, 1300, 3)).astype(np.uint8)
    crop, transform = crop_face(image, box, size=128)
    whole = cv2.GaussianBlur(image, (0, 0), (1 / transform.scale - 1) / 2, borderType=cv2.BORDER_REPLICATE)
    expected = cv2.warpAffine(whole, transform.warp_matrix, (128, 128), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
    assert transform.scale < 0.5 and np.array_equal(crop, expected)


def test_prepare_face_folder_reports_and_never_aborts(tmp_path, face_photo):
    src = tmp_path / "photos"
    (src / "sub").mkdir(parents=True)
    save_image(src / "face.png", face_photo)
    save_image(src / "sub" / "wall.jpg", np.full((100, 100, 3), 90, np.uint8))
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    report = prepare_face_folder(src, tmp_path / "crops", size=64, progress=False)
    status = dict(zip(report["file"], report["status"]))
    assert status == {"face.png": "ok", "sub/wall.jpg": "no_face", "broken.jpg": "unreadable"}
    assert "truncated JPEG" in report.set_index("file").loc["broken.jpg", "message"]
    crop = load_image(tmp_path / "crops" / "face.png")
    assert crop.shape == (64, 64, 3)
    assert (tmp_path / "crops" / "report.csv").is_file() and not (tmp_path / "crops" / "sub").exists()
    save_image(src / "face.jpg", face_photo)                  # beside face.png: each keeps its own crop
    report = prepare_face_folder(src, tmp_path / "crops2", size=64, progress=False).set_index("file")
    assert (report.loc["face.png", "crop"], report.loc["face.jpg", "crop"]) == ("face_png.png", "face_jpg.png")
    assert not list((tmp_path / "crops2").glob("*.tmp"))


def test_output_stems_keep_inputs_apart():
    from hffne_lib.data.images import output_stems

    given = [Path("a.jpg"), Path("a.PNG"), Path("b.png"), Path("sub/a.jpg"), Path("b.png"), Path("a_jpg.png")]
    assert output_stems(given) == [Path("a_jpg"), Path("a_png"), Path("b_png"), Path("sub/a"), Path("b_png_2"),
                                   Path("a_jpg_2")]


@pytest.mark.parametrize("prepare", [prepare_face_folder, prepare_scan_folder])
def test_a_source_folder_that_is_not_there_is_an_error_not_an_empty_report(prepare, tmp_path):
    with pytest.raises(FileNotFoundError, match=f"^{tmp_path / 'typo'}: no such folder$"):
        prepare(tmp_path / "typo", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- Photoface

def _fake_photoface(root: Path, captures: int = 5, size: int = 64) -> list[dict]:
    """Noiseless synthetic lab captures written as a Photoface layout (16-bit PNGs)."""
    samples = []
    for c in range(captures):
        person = make_identity(c // 2, "lab", 5, size)
        sample = render_sample(person, "lab", c, 5, size, lab_specular=0.0, lab_noise=0.0)
        folder = root / f"subject{c // 2}" / f"session{c}"
        folder.mkdir(parents=True)
        for k, image in enumerate(sample["images"]):
            cv2.imwrite(str(folder / f"im{k}.png"), np.round(image.numpy() * 65535).astype(np.uint16))
        np.savetxt(folder / "light.txt", sample["lights"].numpy(), header="x y z per image")
        samples.append(sample)
    return samples


def test_photometric_stereo_on_a_fake_photoface_folder(tmp_path):
    samples = _fake_photoface(tmp_path, captures=3)
    for c, sample in enumerate(samples):
        images, lights = load_photoface_capture(tmp_path / f"subject{c // 2}" / f"session{c}")
        assert images.shape == (4, 64, 64) and np.allclose(np.linalg.norm(lights, axis=1), 1)
        normals, albedo = photometric_stereo(images, lights, sample["mask"])
        mask = sample["mask"][0]
        error = angular_error(normals[None], sample["normal_exact"][None])[0][mask]
        assert error.mean() < 2.0, f"capture {c}: {error.mean():.2f} deg"
        assert (normals[:, ~mask] == 0).all() and albedo.shape == (1, 64, 64)


def test_photometric_stereo_exact_on_a_lambertian_sphere():
    t = (torch.arange(40) + 0.5) / 20 - 1
    y, x = torch.meshgrid(-t, t, indexing="ij")
    mask = x ** 2 + y ** 2 < 0.8
    n = torch.stack([x, y, (1 - x ** 2 - y ** 2).clamp_min(0).sqrt()]) * mask
    lights = torch.nn.functional.normalize(torch.tensor([[0.3, 0.3, 1.0], [-0.3, 0.3, 1], [0.3, -0.3, 1], [-0.3, -0.3, 1]]), dim=1)
    images = 0.7 * (lights @ n.reshape(3, -1)).clamp_min(0).reshape(4, 40, 40)
    normals, albedo = photometric_stereo(images, lights, mask)
    assert torch.allclose(normals[:, mask], n[:, mask], atol=1e-4) and torch.allclose(albedo[0][mask], torch.tensor(0.7))
    with pytest.raises(ValueError, match="K >= 3"):
        photometric_stereo(images[:2], lights[:2])


def test_prepare_photoface_writes_a_lab_dataset(tmp_path):
    _fake_photoface(tmp_path / "raw", captures=5)
    (tmp_path / "raw" / "subject9" / "bad").mkdir(parents=True)
    for k in range(4):
        (tmp_path / "raw" / "subject9" / "bad" / f"im{k}.png").write_text("broken")
    (tmp_path / "raw" / "subject9" / "bad" / "light.txt").write_text("0 0 1\n")
    manifest = prepare_photoface(tmp_path / "raw", tmp_path / "lab", size=64, detect=False, progress=False)
    test_list = (tmp_path / "lab" / "lab_test.txt").read_text().split()
    train_list = (tmp_path / "lab" / "lab_train.txt").read_text().split()
    assert len(test_list) + len(train_list) == 5 and test_list            # the captures used, each once
    subjects = [{Path(capture).parts[0] for capture in captures} for captures in (test_list, train_list)]
    assert not subjects[0] & subjects[1]                                  # no face both trained and tested on
    assert (manifest["splits"]["lab_test"]["samples"], manifest["splits"]["lab_train"]["samples"]) == \
        (len(test_list), len(train_list))
    report = pd.read_csv(tmp_path / "lab" / "report.csv", keep_default_na=False).set_index("capture")
    assert len(report) == 6 and report.loc["subject9/bad", "status"] == "failed"        # every capture, once
    assert report.loc["subject9/bad", "message"].endswith("bad/im0.png: not an image (unknown format)")
    assert set(report.index[report["status"] == "ok"]) == set(test_list) | set(train_list)
    assert not list((tmp_path / "lab").glob("*.report.csv"))              # the per-shard parts are gone
    data = FaceNormalDataset(tmp_path / "lab", "lab_train")
    assert len(data) == 4 * manifest["splits"]["lab_train"]["samples"]
    with pytest.raises(ValueError, match=r"holds no 'scans' split \(it has lab_test, lab_train\)"):
        FaceNormalDataset(tmp_path / "lab", "scans")
    item = data[0]
    assert item["gray"].shape == (1, 64, 64) and item["normal"].shape == (3, 64, 64) and item["mask"].sum() > 500
    assert prepare_photoface(tmp_path / "raw", tmp_path / "lab", size=64, detect=False, progress=False) == manifest
    with pytest.raises(ValueError, match="no capture folders"):
        prepare_photoface(tmp_path / "lab", tmp_path / "other", layout=PhotofaceLayout(images="img_{k}.bmp"))


# ---------------------------------------------------------------- scans

def _sphere_mesh(n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    theta, phi = np.meshgrid(np.linspace(0.01, np.pi - 0.01, n), np.linspace(0, 2 * np.pi, n, endpoint=False), indexing="ij")
    v = np.stack([np.sin(theta) * np.cos(phi), np.cos(theta), np.sin(theta) * np.sin(phi)], -1).reshape(-1, 3) * 50
    i, j = np.meshgrid(np.arange(n - 1), np.arange(n), indexing="ij")
    a, b, c, d = i * n + j, i * n + (j + 1) % n, (i + 1) * n + j, (i + 1) * n + (j + 1) % n
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([b, d, c], -1).reshape(-1, 3)])
    return v, faces


def _write_ply(path: Path, v: np.ndarray, f: np.ndarray, binary: bool, rgb: np.ndarray | None = None) -> None:
    """A PLY of vertices V x 3, triangles F x 3 and, when given, uchar vertex colours V x 3."""
    colour = "" if rgb is None else "property uchar red\nproperty uchar green\nproperty uchar blue\n"
    header = (f"ply\nformat {'binary_little_endian' if binary else 'ascii'} 1.0\nelement vertex {len(v)}\n"
              f"property float x\nproperty float y\nproperty float z\n{colour}"
              f"element face {len(f)}\nproperty list uchar int vertex_indices\nend_header\n").encode()
    if binary:
        fields = [("p", "<f4", (3,))] + ([] if rgb is None else [("c", "u1", (3,))])
        vertices = np.zeros(len(v), np.dtype(fields))
        vertices["p"] = v
        if rgb is not None:
            vertices["c"] = rgb
        faces = np.zeros(len(f), np.dtype([("n", "u1"), ("v", "<i4", (3,))]))
        faces["n"], faces["v"] = 3, f
        path.write_bytes(header + vertices.tobytes() + faces.tobytes())
    else:
        rows = v.tolist() if rgb is None else np.concatenate([v, rgb], axis=1).tolist()
        body = "".join(" ".join(map(str, row)) + "\n" for row in rows) + "".join(f"3 {a} {b} {c}\n" for a, b, c in f)
        path.write_bytes(header + body.encode())


def test_mesh_readers_agree(tmp_path):
    v, f = _sphere_mesh(12)
    (tmp_path / "s.obj").write_text("# sphere\n" + "".join(f"v {x} {y} {z}\n" for x, y, z in v)
                                    + "".join(f"f {a + 1}/1/1 {b + 1}//2 {c + 1}\n" for a, b, c in f))
    _write_ply(tmp_path / "a.ply", v, f, binary=False)
    _write_ply(tmp_path / "b.ply", v, f, binary=True)
    quad = tmp_path / "q.obj"
    quad.write_text("v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nf 1 2 3 4\n")
    for name in ("s.obj", "a.ply", "b.ply"):
        mesh = read_mesh(tmp_path / name)
        assert np.allclose(mesh.vertices.numpy(), v, atol=1e-4) and np.array_equal(mesh.faces.numpy(), f), name
    assert read_mesh(quad).faces.tolist() == [[0, 1, 2], [0, 2, 3]]
    (tmp_path / "bad.ply").write_text("ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nend_header\n1\n")
    (tmp_path / "s.stl").write_text("solid")
    for name, problem in (("none.obj", "no such mesh"), ("bad.ply", "malformed"), ("s.stl", "unsupported")):
        with pytest.raises(ValueError, match=problem):
            read_mesh(tmp_path / name)


@pytest.mark.parametrize("inward", [False, True])
def test_scan_normals_match_the_analytic_sphere(inward):
    v, f = _sphere_mesh(48)
    mesh = Mesh(torch.tensor(v, dtype=torch.float32), torch.tensor(f[:, ::-1].copy() if inward else f))
    out = render_mesh_normals(mesh, size=64, rotation=rotation_matrix(20, -10))
    n, mask = out["normal"], out["mask"][0]
    t = (torch.arange(64) + 0.5 - 32) / (64 / 1.2 / 2)                   # sphere radius in pixels: 64 / 1.2 / 2
    y, x = torch.meshgrid(-t, t, indexing="ij")
    inside = x ** 2 + y ** 2 < 0.8
    expected = torch.stack([x, y, (1 - x ** 2 - y ** 2).clamp_min(0).sqrt()])
    assert (mask == (x ** 2 + y ** 2 < 1)).float().mean() > 0.98
    error = angular_error(n[None], expected[None])[0][inside]
    assert error.mean() < 1.5                                            # winding fixed either way


def test_prepare_scan_folder(tmp_path):
    v, f = _sphere_mesh(24)
    (tmp_path / "scans").mkdir()
    _write_ply(tmp_path / "scans" / "a.ply", v, f, binary=True)
    (tmp_path / "scans" / "b.obj").write_text("v 1 2\n")
    report = prepare_scan_folder(tmp_path / "scans", tmp_path / "out", size=32, progress=False)
    assert dict(zip(report["file"], report["status"])) == {"a.ply": "ok", "b.obj": "unreadable"}
    normal = from_uint8_image(cv2.cvtColor(cv2.imread(str(tmp_path / "out" / "a_normal.png")), cv2.COLOR_BGR2RGB))
    assert normal[2, 16, 16] > 0.95                                       # the sphere's centre faces the camera
    assert cv2.imread(str(tmp_path / "out" / "a_mask.png"), cv2.IMREAD_GRAYSCALE)[16, 16] == 255
    with pytest.raises(OutputExistsError, match="report.csv exists .pass overwrite=True"):
        prepare_scan_folder(tmp_path / "scans", tmp_path / "out", size=32, progress=False)
    (tmp_path / "out" / "report.csv").unlink()
    with pytest.raises(OutputExistsError, match="a_normal.png exists"):     # each output is guarded, not the report alone
        prepare_scan_folder(tmp_path / "scans", tmp_path / "out", size=32, progress=False)
    assert len(prepare_scan_folder(tmp_path / "scans", tmp_path / "out", size=32, progress=False, overwrite=True)) == 2


def test_coloured_meshes_give_their_texture_per_face_corner_or_their_vertex_colours(tmp_path):
    # a quad whose two triangles share vertices 1 and 3 but not their texture coordinates (a UV seam)
    quad = "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvt 0 0\nvt 0.5 0\nvt 0.5 1\nvt 1 1\nvt 1 0\n"
    (tmp_path / "q.obj").write_text("mtllib q.mtl\n" + quad + "usemtl a\nf 1/1 2/2 3/3\nusemtl b\nf 1/5 3/4 4/3\n")
    (tmp_path / "q.mtl").write_text("newmtl a\nmap_Kd a.png\nnewmtl b\nKd 1 0 0\nmap_Kd -s 1 1 1 sub\\b.png\n")
    save_image(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "sub").mkdir()
    save_image(tmp_path / "sub" / "b.png", np.zeros((4, 4, 3), np.uint8))
    mesh, colour = read_coloured_mesh(tmp_path / "q.obj")
    assert mesh.faces.tolist() == [[0, 1, 2], [0, 2, 3]] and colour.vertex is None
    assert colour.corner_uvs.tolist() == [[[0, 0], [0.5, 0], [0.5, 1]], [[1, 0], [1, 1], [0.5, 1]]]
    assert colour.face_texture.tolist() == [0, 1]
    assert colour.textures == (tmp_path / "a.png", tmp_path / "sub" / "b.png")
    assert colour.describe() == "texture a.png, b.png"
    # without mtllib: the image of the same name beside it; vertex colours (0-255 or 0-1) win over a texture
    (tmp_path / "beside").mkdir()
    (tmp_path / "beside" / "s.obj").write_text(quad + "f 1/1 2/2 3/3\n")
    save_image(tmp_path / "beside" / "s.jpg", np.zeros((4, 4, 3), np.uint8))
    assert read_coloured_mesh(tmp_path / "beside" / "s.obj")[1].textures == (tmp_path / "beside" / "s.jpg",)
    (tmp_path / "c.obj").write_text("v 0 0 0 255 0 0\nv 1 0 0 0 255 0\nv 0 1 0 0 0 255\nf 1 2 3\n")
    assert read_coloured_mesh(tmp_path / "c.obj")[1].vertex.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    v, f = _sphere_mesh(6)
    rgb = np.random.default_rng(0).integers(0, 256, (len(v), 3))
    for binary in (False, True):
        path = tmp_path / f"c{int(binary)}.ply"
        _write_ply(path, v, f, binary, rgb)
        assert np.allclose(read_coloured_mesh(path)[1].vertex.numpy(), rgb / 255, atol=1e-6)
        assert read_coloured_mesh(path, colour=False)[1] is None
    diffuse = tmp_path / "c0.ply"                      # MeshLab-style property names, same colours
    diffuse.write_bytes(diffuse.read_bytes().replace(b"uchar red", b"uchar diffuse_red")
                        .replace(b"uchar green", b"uchar diffuse_green").replace(b"uchar blue", b"uchar diffuse_blue"))
    assert np.allclose(read_coloured_mesh(diffuse)[1].vertex.numpy(), rgb / 255, atol=1e-6)
    _write_ply(tmp_path / "plain.ply", v, f, True)
    assert read_coloured_mesh(tmp_path / "plain.ply")[1] is None
    # what cannot give every face its colour is a one-line error naming the file; read_mesh never looks
    (tmp_path / "sub" / "b.png").unlink()
    with pytest.raises(ValueError, match=r"q.obj: texture sub.b.png of material 'b' \(q.mtl\) not found"):
        read_coloured_mesh(tmp_path / "q.obj")
    assert read_mesh(tmp_path / "q.obj").faces.shape == (2, 3)
    (tmp_path / "q.mtl").unlink()
    with pytest.raises(ValueError, match="q.obj: its material library q.mtl is not beside it"):
        read_coloured_mesh(tmp_path / "q.obj")
    (tmp_path / "beside" / "s.obj").write_text(quad + "f 1/1 2/2 3/3\nf 1 3 4\n")
    with pytest.raises(ValueError, match=r"s.obj: 1 of 2 triangles have no texture coordinates .*'shaded'"):
        read_coloured_mesh(tmp_path / "beside" / "s.obj")


def test_a_textured_scan_renders_as_the_synthetic_renderer_paints_that_face(tmp_path):
    face = write_textured_face(tmp_path, size=64)
    mesh, colour = read_coloured_mesh(tmp_path / "face.obj")
    rendered = render_scan(mesh, colour, 64)
    g = render_gbuffer(face.shape.mesh, torch.eye(3), 64)
    truth = face.texture.sample(g.uv)["albedo"] * g.mask
    assert torch.equal(rendered["mask"], g.mask) and torch.equal(rendered["normal"], g.normal)
    assert (rendered["albedo"] - truth).abs()[:, g.mask[0]].mean() < 0.003       # 8-bit texture, same look-up
    assert torch.equal(rendered["rgb"], rendered["albedo"])                       # as captured: unlit
    assert rendered["light"][LIGHT_FIELDS.index("ambient")] == 1.0


def test_a_texture_finer_than_the_render_is_low_passed_not_aliased(tmp_path):
    checker = np.indices((256, 256)).sum(0) % 2 * 255                   # one-texel squares, mean 0.5
    save_image(tmp_path / "p.png", np.repeat(checker[..., None], 3, axis=2).astype(np.uint8))
    (tmp_path / "p.obj").write_text("v -1 -1 0\nv 1 -1 0\nv 1 1 0\nv -1 1 0\nvt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\n"
                                    "f 1/1 2/2 3/3 4/4\n")
    mesh, colour = read_coloured_mesh(tmp_path / "p.obj")
    rendered = render_scan(mesh, colour, 32)                               # about ten texels a pixel
    inside = rendered["mask"][0].clone()
    inside[[0, -1]], inside[:, [0, -1]] = False, False
    grey = rendered["albedo"][:, inside]
    assert abs(grey.mean() - 0.5) < 0.02 and grey.std() < 0.03            # a bilinear look-up alone: noise in 0..1


def test_a_lit_scan_is_shaded_by_its_angle_to_the_light():
    # a plane turned 30 degrees about the vertical axis, grey vertex colours, lit from the front
    s, c = float(np.sin(np.radians(30))), float(np.cos(np.radians(30)))
    corners = torch.tensor([[-c, -1, s], [c, -1, -s], [c, 1, -s], [-c, 1, s]], dtype=torch.float32) * 50
    plane = Mesh(corners, torch.tensor([[0, 1, 2], [0, 2, 3]]))
    grey = SurfaceColour(vertex=torch.full((4, 3), 0.5))
    rendered = render_scan(plane, grey, 32, light=(0.0, 0.0), ambient=0.2)
    inside = rendered["mask"][0]
    assert inside.float().mean() > 0.5
    assert torch.allclose(rendered["normal"][:, inside], torch.tensor([[s], [0.0], [c]]), atol=1e-5)
    assert torch.allclose(rendered["rgb"][:, inside], torch.tensor(0.5 * (0.2 + 0.8 * c)), atol=1e-5)
    assert (rendered["rgb"][:, ~inside] == 0).all()                               # black around it
    shaded = render_scan(plane, None, 32, light=(-90.0, 0.0), ambient=0.2)       # from the image left: lit at 120 deg
    assert torch.allclose(shaded["rgb"][:, inside], torch.tensor(0.6 * 0.2), atol=1e-5)


def test_prepare_scans_makes_the_scans_split_with_a_report_and_resumes(tmp_path):
    src = tmp_path / "scans"
    face = write_textured_face(src / "florence", size=64)
    (src / "broken.obj").write_text("v 1 2\n")
    v, f = _sphere_mesh(24)
    _write_ply(src / "ball.ply", v, f, binary=True)
    manifest = prepare_scans(src, tmp_path / "out", size=64, light=(0.0, 20.0), progress=False)
    assert manifest["splits"]["scans"]["samples"] == 1 and manifest["settings"]["crop"] == "detect"
    report = pd.read_csv(tmp_path / "out" / "report.csv", keep_default_na=False).set_index("file")
    assert report["status"].to_dict() == {"ball.ply": "no_face", "broken.obj": "unreadable", "florence/face.obj": "ok"}
    assert report.loc["florence/face.obj", "colour"] == "texture face_skin.png"
    assert report.loc["ball.ply", "colour"] == "none (shaded)" and "crop 'box'" in report.loc["ball.ply", "message"]
    data = FaceNormalDataset(tmp_path / "out", "scans")
    item = data[0]
    inside = item["mask"][0].bool()
    assert len(data) == 1 and data.ground_truth and item["identity"] == 2_000_002          # the third file
    assert not inside[~torch.from_numpy(face_mask(64))].any() and inside.float().mean() > 0.3
    assert torch.allclose(item["normal"][:, inside].norm(dim=0), torch.ones(int(inside.sum())), atol=2e-3)
    assert item["detail_mask"].sum() == 0 and item["gray"][0][inside].mean() > 0.1
    assert prepare_scans(src, tmp_path / "out", size=64, light=(0.0, 20.0), progress=False) == manifest
    with pytest.raises(ValueError, match="other settings .*crop: 'detect' -> 'box'"):
        prepare_scans(src, tmp_path / "out", size=64, crop="box", light=(0.0, 20.0), progress=False)
    # crop "box" frames the whole scan as render_mesh_normals does, mask = the scan
    box = prepare_scans(src / "florence", tmp_path / "box", size=64, crop="box", progress=False)
    item = FaceNormalDataset(tmp_path / "box", "scans")[0]
    truth = render_mesh_normals(face.shape.mesh, 64)
    assert box["splits"]["scans"]["identities"] == [2_000_000]
    assert torch.equal(item["mask"].bool(), truth["mask"])
    assert angular_error(item["normal"][None], truth["normal"][None])[0][truth["mask"][0]].max() < 0.5  # float16
    for bad, problem in (({"crop": "tight"}, "unknown crop 'tight'"), ({"appearance": "x"}, "unknown appearance"),
                         ({"rotation": np.eye(2)}, r"3 x 3 matrix, got shape \(2, 2\)")):
        with pytest.raises(ValueError, match=problem):
            prepare_scans(src, tmp_path / "bad", size=64, progress=False, **bad)
    with pytest.raises(ValueError, match="no meshes"):
        prepare_scans(tmp_path / "out", tmp_path / "none", size=64, progress=False)


def test_the_data_command_prepares_scans_and_says_how_to_evaluate_on_them(tmp_path, capsys):
    from hffne_lib.data.__main__ import main
    write_textured_face(tmp_path / "scans", size=64)
    assert main(["--scans", str(tmp_path / "scans"), "--root", str(tmp_path / "out"), "--size", "64", "--light", "0",
                 "20", "--rotation", "5", "0", "0", "--no-progress"]) == 0
    assert f"--split-root scans={tmp_path / 'out'}" in capsys.readouterr().out
    settings = json.loads((tmp_path / "out" / "manifest.json").read_text())["settings"]
    assert settings["light"] == [0.0, 20.0] and np.allclose(settings["rotation"], rotation_matrix(5, 0, 0).numpy())
    assert main(["--scans", str(tmp_path / "missing"), "--root", str(tmp_path / "o2"), "--no-progress"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    with pytest.raises(SystemExit):
        main(["--scans", str(tmp_path / "scans"), "--photos", str(tmp_path / "scans"), "--root", str(tmp_path / "o3")])
    assert "not both" in capsys.readouterr().err


def test_photoface_folders_that_cannot_make_a_lab_set_say_why(tmp_path):
    _fake_photoface(tmp_path / "raw", captures=2)                     # both captures of subject0
    with pytest.raises(ValueError, match="all 2 captures belong to one subject \\('subject0'"):
        prepare_photoface(tmp_path / "raw", tmp_path / "lab", size=64, detect=False, progress=False)
    _fake_photoface(tmp_path / "raw2", captures=4)
    with pytest.raises(ValueError, match="test_fraction=0.0 leaves lab_test empty with 2 subjects"):
        prepare_photoface(tmp_path / "raw2", tmp_path / "lab", size=64, test_fraction=0.0, detect=False, progress=False)
    with pytest.raises(ValueError, match="has 4 images .* got count=3"):
        PhotofaceLayout(count=3)
    for folder in (tmp_path / "raw2").rglob("light.txt"):
        folder.write_text("0 0 1\n0 0 0\n1 0 1\n-1 0 1\n")
    with pytest.raises(ValueError, match="light.txt: a light direction of zero length"):
        load_photoface_capture(next((tmp_path / "raw2").rglob("light.txt")).parent)
    with pytest.raises(ValueError, match=f"{tmp_path / 'lab'}: no usable input for lab_train .every one failed.: see"):
        prepare_photoface(tmp_path / "raw2", tmp_path / "lab", size=64, detect=False, progress=False)
    assert "zero length" in (tmp_path / "lab" / "report.csv").read_text()


def test_prepare_face_folder_never_writes_over_photos_or_earlier_crops(tmp_path, face_photo):
    src = tmp_path / "photos"
    src.mkdir()
    save_image(src / "face.png", face_photo)
    for target in (src, src / "crops"):
        with pytest.raises(ValueError, match="is inside .*photos: write the crops to a folder outside the photos"):
            prepare_face_folder(src, target, size=64, progress=False)
    assert sorted(p.name for p in src.iterdir()) == ["face.png"]
    prepare_face_folder(src, tmp_path / "crops", size=64, progress=False)
    (tmp_path / "crops" / "face.png").write_bytes(b"kept")
    with pytest.raises(OutputExistsError, match="report.csv exists .pass overwrite=True to replace it."):
        prepare_face_folder(src, tmp_path / "crops", size=64, progress=False)
    assert (tmp_path / "crops" / "face.png").read_bytes() == b"kept"
    prepare_face_folder(src, tmp_path / "crops", size=64, progress=False, overwrite=True)
    assert load_image(tmp_path / "crops" / "face.png").shape == (64, 64, 3)


def test_prepare_wild_photos_makes_a_training_split_without_ground_truth(tmp_path, face_photo):
    src = tmp_path / "photos"
    (src / "sub").mkdir(parents=True)
    save_image(src / "a.png", face_photo)
    save_image(src / "sub" / "b.jpg", face_photo)
    save_image(src / "wall.png", np.full((100, 100, 3), 90, np.uint8))
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    manifest = prepare_wild_photos(src, tmp_path / "wild", size=64, shard_size=2, progress=False)
    assert list(manifest["splits"]) == ["wild_train"] and manifest["splits"]["wild_train"]["samples"] == 2
    report = pd.read_csv(tmp_path / "wild" / "report.csv", keep_default_na=False)
    assert dict(zip(report["file"], report["status"])) == {"a.png": "ok", "broken.jpg": "unreadable",
                                                           "sub/b.jpg": "ok", "wall.png": "no_face"}
    data = FaceNormalDataset(tmp_path / "wild", "wild_train")
    item = data[1]
    assert not data.ground_truth and len(data) == 2 and set(item) == {"gray", "rgb", "mask", "identity"}
    assert item["identity"] == 2                                           # sub/b.jpg, the third photo
    assert torch.equal(item["mask"][0].bool(), torch.from_numpy(face_mask(64)))
    crop, _ = crop_face(load_image(src / "sub" / "b.jpg"), detect_faces(load_image(src / "sub" / "b.jpg"))[0], 64)
    assert np.abs(item["rgb"].permute(1, 2, 0).numpy() - crop).max() <= 0.5 / 255 + 1e-6
    assert prepare_wild_photos(src, tmp_path / "wild", size=64, shard_size=2, progress=False) == manifest
    aligned = prepare_wild_photos(src / "sub", tmp_path / "aligned", size=64, aligned=True, progress=False)
    assert aligned["splits"]["wild_train"]["samples"] == 1                  # no detection: the whole photo
    (src / "only_walls").mkdir()
    save_image(src / "only_walls" / "w.png", np.full((100, 100, 3), 90, np.uint8))
    with pytest.raises(ValueError, match="no usable input for wild_train .every one failed.: see .*report.csv"):
        prepare_wild_photos(src / "only_walls", tmp_path / "walls", size=64, progress=False)
    with pytest.raises(ValueError, match="is inside"):
        prepare_wild_photos(src, src / "prepared", size=64, progress=False)
