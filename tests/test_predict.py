"""hffne_lib.predict: photos in every format, bad inputs one line each, checkpoints, outputs.

Fixtures shared with test_cli.py and test_compare.py: ``tiny_run`` (untrained ci-preset
checkpoints at 64 px built with the checkpoint API), ``estimator`` and ``face_photo`` (a real face
photo from the shared folder, see conftest.shared_dir).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from hffne_lib.checkpoint import make_payload, save_checkpoint
from hffne_lib.config import get_config
from hffne_lib.official import CheckpointError
from hffne_lib.pipeline import NormalEstimator
from hffne_lib.predict import (FACE_OUTPUTS, IMAGE_OUTPUTS, NO_WEIGHTS_HELP, NoFaceError, iter_inputs,
                               load_estimator, predict_image, predict_paths, resolve_checkpoints,
                               write_prediction)
from hffne_lib.refiner import Refiner

REPO = Path(__file__).resolve().parents[1]
REAL_FACE = "data/real_faces/images/182716.png"


def write_run(run_dir: Path, preset: str = "ci", **overrides) -> Path:
    """Untrained coarse + refiner checkpoints of a preset under run_dir (the training layout);
    the refiner records an exemplar path that no longer exists, as after moving a run."""
    cfg = get_config(preset, **overrides)
    torch.manual_seed(0)
    save_checkpoint(run_dir / "coarse" / "latest.pt",
                    make_payload("coarse", 1, cfg, {"generator": cfg.coarse.build_generator()}, {}, "unknown", "none"))
    save_checkpoint(run_dir / "refiner" / "latest.pt",
                    make_payload("refiner", 1, cfg, {"refiner": Refiner(cfg.refiner)}, {}, "unknown",
                                 "random stand-in", exemplar={"path": "/moved/away/coarse/latest.pt", "iteration": 1}))
    return run_dir


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    return write_run(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="session")
def estimator(tiny_run) -> NormalEstimator:
    return load_estimator([tiny_run])


@pytest.fixture(scope="session")
def face_photo(shared_dir) -> np.ndarray:
    """H x W x 3 uint8 RGB: a real face photo from the developers' shared folder, which the
    detector finds in every format written below (a synthetic render is too marginal for that)."""
    return np.asarray(Image.open(shared_dir / REAL_FACE).convert("RGB"))


def save(photo: np.ndarray, path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(photo).save(path, **kwargs)
    return path


FORMATS = ("a", "b", "c", "d_rgba", "e_grey16", "f_grey", "g_rgb16")


@pytest.fixture(scope="module")
def batch(estimator, face_photo, tmp_path_factory):
    """One recursive batch over every format, a nested photo and every kind of bad input:
    (input folder, output folder, summary)."""
    root = tmp_path_factory.mktemp("batch")
    photos = root / "in"
    grey = np.asarray(Image.fromarray(face_photo).convert("L"))
    save(face_photo, photos / "a.jpg", quality=95)
    save(face_photo, photos / "b.webp", quality=95)
    save(face_photo, photos / "c.bmp")
    save(np.dstack([face_photo, np.full(grey.shape, 255, np.uint8)]), photos / "d_rgba.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(photos / "e_grey16.png")
    save(grey, photos / "f_grey.tif")
    cv2.imwrite(str(photos / "g_rgb16.tiff"), face_photo[..., ::-1].astype(np.uint16) * 257)
    save(face_photo, photos / "sub" / "deep.jpg")
    (photos / "empty.png").write_bytes(b"")
    (photos / "truncated.jpg").write_bytes((photos / "a.jpg").read_bytes()[:300])
    (photos / "notes.png").write_text("not an image\n")
    save(np.full((200, 200, 3), 128, np.uint8), photos / "blank.png")
    save(face_photo[::16, ::16], photos / "tiny.png")
    summary = predict_paths(estimator, [root / "missing.jpg", photos], root / "out", recursive=True, progress=False)
    return photos, root / "out", summary


def test_every_format_and_writes_every_output(batch, face_photo):
    _, out, summary = batch
    assert summary.counts["done"] == len(FORMATS) + 1, summary.messages
    assert len(summary.seconds) == summary.counts["done"] and all(0 < s < 60 for s in summary.seconds)
    for name in FORMATS + ("sub/deep",):
        assert all((out / name / f"face0_{n}").is_file() for n in FACE_OUTPUTS)
        assert all((out / name / n).is_file() for n in IMAGE_OUTPUTS)
    normals = np.load(out / "a" / "image_normals.npy")
    assert normals.shape == (*face_photo.shape[:2], 3) and normals.dtype == np.float32


def test_bad_inputs_one_line_each_and_the_batch_goes_on(batch):
    _, _, summary = batch
    assert summary.counts["unreadable"] == 4 and summary.counts["no face"] == 2
    assert len(summary.messages) == 6 and all("\n" not in m for m in summary.messages)
    for name, problem in (("missing.jpg", "no such file"), ("empty.png", "empty"), ("truncated.jpg", "truncated"),
                          ("notes.png", "not an image"), ("blank.png", "no face found"), ("tiny.png", "too small")):
        assert any(name in m and problem in m for m in summary.messages), (name, summary.messages)


def test_folders_flat_unless_recursive(batch):
    photos = batch[0]
    flat = {name.as_posix() for _, name in iter_inputs([photos])}
    deep = {name.as_posix() for _, name in iter_inputs([photos], recursive=True)}
    assert "sub/deep.jpg" not in flat and deep == flat | {"sub/deep.jpg"}


def test_photos_whose_names_clash_each_get_their_own_folder(estimator, batch, tmp_path):
    """Three files named me.jpg from three folders, and me.png beside one of them: four folders,
    none written twice (a later photo used to land in an earlier one's folder)."""
    photos = batch[0]
    inputs = []
    for folder in ("x", "y", "z"):
        inputs.append(tmp_path / folder / "me.jpg")
        inputs[-1].parent.mkdir()
        inputs[-1].write_bytes((photos / "a.jpg").read_bytes())
    (tmp_path / "x" / "me.png").write_bytes((photos / "d_rgba.png").read_bytes())
    summary = predict_paths(estimator, [*inputs, tmp_path / "x" / "me.png"], tmp_path / "out", progress=False)
    assert summary.counts["done"] == 4, summary.messages
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["me_jpg", "me_jpg_2", "me_jpg_3", "me_png"]


def test_never_overwrites_unless_asked(estimator, batch):
    photos, out, _ = batch
    first = out / "a" / "face0_normals.png"
    first.write_bytes(b"mine")
    again = predict_paths(estimator, [photos / "a.jpg"], out, progress=False)
    assert again.counts["skipped (exists)"] == 1 and first.read_bytes() == b"mine"
    forced = predict_paths(estimator, [photos / "a.jpg"], out, overwrite=True, progress=False)
    assert forced.counts["done"] == 1 and first.read_bytes() != b"mine"


def test_unwritable_output_folder(estimator, batch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the output folder should be")
    summary = predict_paths(estimator, [batch[0] / "c.bmp"], blocker / "out", progress=False)
    assert summary.counts["not written"] == 1 and "cannot write" in summary.messages[0]


def test_estimator_predict_matches_the_batch(estimator, batch):
    photos, out, _ = batch
    result = estimator.predict(photos / "c.bmp")
    assert np.allclose(result.normals.permute(1, 2, 0).numpy(), np.load(out / "c" / "image_normals.npy"), atol=1e-5)


def test_all_faces_shapes_and_paste_back(estimator, face_photo, tmp_path):
    two = np.concatenate([face_photo, face_photo[:, ::-1]], axis=1)
    result = predict_image(estimator, two.astype(np.float32) / 255.0, all_faces=True)
    assert len(result.faces) == 2
    face = result.faces[0]
    assert face.normals.shape == (3, 64, 64) and face.crop.shape == (64, 64, 3)
    assert torch.allclose(face.normals.norm(dim=0), torch.ones(64, 64), atol=1e-4)
    height, width = two.shape[:2]
    assert result.normals.shape == (3, height, width) and result.mask.shape == (height, width)
    assert result.mask[:, :width // 2].any() and result.mask[:, width // 2:].any() and result.mask.mean() < 0.9
    lengths = result.normals.norm(dim=0).numpy()
    assert np.allclose(lengths[result.mask], 1.0, atol=1e-4) and not lengths[~result.mask].any()
    paths = write_prediction(result, tmp_path / "two")
    assert {p.name for p in paths} >= {"face1_normals.png", "image_normals.npy"} and all(p.is_file() for p in paths)


def test_checkpoint_forms(tiny_run):
    coarse, refiner = tiny_run / "coarse" / "latest.pt", tiny_run / "refiner" / "latest.pt"
    for given in ([tiny_run], [tiny_run / "refiner"], [refiner], [coarse, refiner]):
        assert resolve_checkpoints(given) == (coarse, refiner)
    for given in ([tiny_run / "coarse"], [coarse]):                      # for test-time fitting, no refiner
        assert resolve_checkpoints(given) == (coarse, None)


def test_exemplar_only_estimator(tiny_run):
    coarse = tiny_run / "coarse" / "latest.pt"
    exemplar_only = NormalEstimator.from_checkpoints(coarse, exemplar_only=True)
    both = NormalEstimator.from_checkpoints(coarse, tiny_run / "refiner" / "latest.pt")
    gray = torch.rand(2, 1, 64, 64)
    assert torch.equal(exemplar_only.coarse(gray), both.coarse(gray))
    assert exemplar_only.provenance["vgg_weights"] == "none (no refiner)"
    with pytest.raises(ValueError, match="this estimator has no refiner"):
        exemplar_only(gray)


def test_wrong_checkpoints_fail_in_one_line(tiny_run, tmp_path):
    coarse, refiner = tiny_run / "coarse" / "latest.pt", tiny_run / "refiner" / "latest.pt"
    with pytest.raises(CheckpointError, match="a coarse checkpoint alone has no refiner"):
        load_estimator([coarse])
    with pytest.raises(CheckpointError, match="is a coarse checkpoint, expected a refiner"):
        load_estimator([coarse, coarse])
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt: not a readable checkpoint"):
        load_estimator([junk])
    other = write_run(tmp_path / "other", coarse__depth=5, resolution=32)
    with pytest.raises(CheckpointError, match="trained at 64 px, expected 32 px"):
        load_estimator([other / "coarse" / "latest.pt", refiner])
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_estimator([tmp_path / "nothing"])
    with pytest.raises(CheckpointError) as err:
        load_estimator()
    assert str(err.value) == NO_WEIGHTS_HELP and "--checkpoint" in NO_WEIGHTS_HELP


def test_an_8_bit_or_grey_array_gives_the_float_arrays_normals_and_a_bad_one_is_one_line(estimator, face_photo):
    """uint8 photos (PIL, OpenCV) used to be read as floats in [0, 255]: other normals, silently."""
    photo = face_photo.astype(np.float32) / 255.0
    expected = estimator.predict(photo, aligned=True).normals
    assert torch.equal(estimator.predict(face_photo, aligned=True).normals, expected)
    rgba = np.concatenate([face_photo, np.full_like(face_photo[..., :1], 255)], axis=2)
    assert torch.equal(estimator.predict(rgba, aligned=True).normals, expected)
    grey = face_photo.mean(axis=2).astype(np.float32) / 255.0
    from_grey = estimator.predict(grey, aligned=True).normals
    assert torch.equal(from_grey, estimator.predict(np.repeat(grey[..., None], 3, axis=2), aligned=True).normals)
    for bad, message in ((photo * 255.0, r"must be in \[0, 1\], got values from 0 to 255"),
                         (photo[..., :2], r"got shape \(256, 256, 2\)"),
                         (face_photo.astype(np.int16), "got dtype int16")):
        with pytest.raises(ValueError, match=message):
            estimator.predict(bad, aligned=True)


def test_no_face_raises(estimator):
    with pytest.raises(NoFaceError, match="no face found"):
        predict_image(estimator, np.full((120, 120, 3), 0.5, np.float32))


def test_aligned_crops_skip_detection_and_keep_the_frame(estimator, face_photo):
    photo = face_photo.astype(np.float32) / 255.0                     # 256 x 256, a CelebA-HQ-style crop
    result = estimator.predict(photo, aligned=True)
    face = result.faces[0]
    assert (face.transform.scale, face.transform.tx, face.transform.ty) == pytest.approx((64 / 256, 0.0, 0.0))
    assert np.abs(face.crop - cv2.resize(photo, (64, 64), interpolation=cv2.INTER_AREA)).mean() < 0.04  # 1 px off: 0.044
    assert result.normals.shape == (3, 256, 256) and 0.3 < result.mask.mean() < 0.8
    wide = np.full((100, 300, 3), 0.5, np.float32)                    # nothing a detector would find
    result = predict_image(estimator, wide, aligned=True)
    box = result.faces[0].box
    assert (box.x + box.w / 2, box.y + box.h / 2, box.w) == pytest.approx((150, 50, 250))
    assert result.mask[:, 150].any() and not result.mask[:, :20].any()      # the box starts at x = 25


@pytest.mark.parametrize("missing", ["cascade file", "cascade API"])
def test_missing_face_detector_is_one_line_and_aligned_still_works(missing, estimator, face_photo, tiny_run, tmp_path,
                                                                   monkeypatch, capsys):
    from hffne_lib.cli import EXIT_OK, EXIT_USAGE, main
    from hffne_lib.data import DetectorUnavailableError

    if missing == "cascade file":                                    # as with an OpenCV 5.x wheel
        monkeypatch.setattr(cv2.data, "haarcascades", str(tmp_path))
    else:                                                            # as with the H200 image's OpenCV
        monkeypatch.delattr(cv2, "CascadeClassifier")
    with pytest.raises(DetectorUnavailableError, match=r"has no haarcascade_frontalface_default.xml: install "):
        predict_image(estimator, face_photo.astype(np.float32) / 255.0)
    photo = save(face_photo, tmp_path / "in" / "face.png")
    args = ["predict", str(photo), "--checkpoint", str(tiny_run), "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "a")]) == EXIT_USAGE
    assert capsys.readouterr().err.count("\n") == 1
    assert main([*args, "--out", str(tmp_path / "b"), "--aligned"]) == EXIT_OK
    assert (tmp_path / "b" / "face" / "image_normals.npy").is_file()
    with pytest.raises(SystemExit):
        main([*args, "--out", str(tmp_path / "c"), "--aligned", "--all-faces"])
