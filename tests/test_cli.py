"""The ``hffne`` command: exit codes, one-line errors, outputs (fixtures from test_predict.py)."""
from __future__ import annotations

import re
import subprocess
import sys

import numpy as np

from hffne_lib.cli import EXIT_NOTHING_DONE, EXIT_OK, EXIT_USAGE, main
from test_predict import estimator, face_photo, save, tiny_run  # noqa: F401 - shared fixtures

from test_predict import REPO


def test_predict_writes_and_summarises(tiny_run, face_photo, tmp_path, capsys):
    photo = save(face_photo, tmp_path / "face.png")
    code = main(["predict", str(photo), str(tmp_path / "missing.png"), "--out", str(tmp_path / "out"),
                 "--checkpoint", str(tiny_run), "--no-progress"])
    out, err = capsys.readouterr()
    assert code == EXIT_OK and (tmp_path / "out" / "face" / "face0_sheet.png").is_file()
    assert "1 done, 0 no face, 1 unreadable" in out and err.strip().endswith("missing.png: no such file")
    assert re.search(r"model loaded in \d+\.\d\d s on cpu", out)
    assert re.search(r"; [\d.e+-]+ s per photo \(median of 1; the first [\d.e+-]+ s\)", out)


def test_nothing_processed_is_an_error(tiny_run, tmp_path, capsys):
    blank = save(np.full((100, 100, 3), 90, np.uint8), tmp_path / "blank.png")
    code = main(["predict", str(blank), "--out", str(tmp_path / "out"), "--checkpoint", str(tiny_run), "--no-progress"])
    assert code == EXIT_NOTHING_DONE and "no face found" in capsys.readouterr().err


def test_weights_problems_are_one_line(tiny_run, tmp_path, capsys):
    for weights in ([], ["--checkpoint", str(tiny_run / "coarse" / "latest.pt")],
                    ["--official-exemplar", str(tmp_path / "ExemplarModel.pkl")],
                    ["--checkpoint", str(tiny_run), "--official-refiner", "x.pt"],
                    ["--checkpoint", str(tiny_run), "--device", "gpu"]):                 # no such device
        code = main(["predict", str(tmp_path), "--out", str(tmp_path / "out"), *weights])
        err = capsys.readouterr().err
        assert code == EXIT_USAGE and err.count("\n") == 1 and err.startswith("hffne predict: "), err
    assert not (tmp_path / "out").exists()


def test_module_entry_point():
    result = subprocess.run([sys.executable, "-m", "hffne_lib.cli", "predict", "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--official-exemplar" in result.stdout and "--recursive" in result.stdout


def test_fit_steps_replace_the_refined_normals_and_a_bad_count_is_one_line(tiny_run, face_photo, tmp_path, capsys):
    photo = save(face_photo, tmp_path / "face.png")
    for name, checkpoint, extra in (("refined", tiny_run, []), ("fitted", tiny_run, ["--fit-steps", "3"]),
                                    ("coarse_only", tiny_run / "coarse", ["--fit-steps", "3"])):
        assert main(["predict", str(photo), "--out", str(tmp_path / name), "--checkpoint", str(checkpoint),
                     "--no-progress", *extra]) == EXIT_OK
    refined, fitted, coarse_only = (np.load(tmp_path / name / "face" / "face0_normals.npy")
                                    for name in ("refined", "fitted", "coarse_only"))
    inside = np.linalg.norm(fitted, axis=-1) > 0
    assert inside.any() and np.allclose(np.linalg.norm(fitted[inside], axis=-1), 1.0, atol=1e-4)
    assert not np.allclose(fitted, refined, atol=1e-3)
    assert np.allclose(coarse_only, fitted, atol=1e-6)             # fitting never uses the refiner
    capsys.readouterr()
    code = main(["predict", str(photo), "--out", str(tmp_path / "bad"), "--checkpoint", str(tiny_run),
                 "--fit-steps", "-2"])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and err.count("\n") == 1 and "steps >= 1" in err and not (tmp_path / "bad").exists()
