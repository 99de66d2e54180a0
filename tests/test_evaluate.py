"""evaluate(): exact angles from stand-in stages with known errors, regions, per-image rows."""
from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
import torch.nn as nn

from hffne_lib.data import FaceNormalDataset, prepare_scans
from hffne_lib.evaluate import DETAIL_FREE, REGIONS, evaluate, evaluate_splits
from hffne_lib.pipeline import NormalEstimator
from scan_files import write_textured_face
from test_train import RandomFaces


class TiltedTruth(nn.Module):
    """Returns the RandomFaces ground truth (a function of the grey image) turned by a fixed angle."""

    def __init__(self, degrees: float):
        super().__init__()
        self.angle = nn.Parameter(torch.tensor(math.radians(degrees)), requires_grad=False)

    def truth(self, gray: torch.Tensor) -> torch.Tensor:
        tilt = (gray - 0.5) * 3
        return nn.functional.normalize(torch.cat([tilt, -tilt, torch.ones_like(tilt)], 1), dim=1)

    def rotate(self, n: torch.Tensor) -> torch.Tensor:
        """cos(a) n + sin(a) t with t a unit vector orthogonal to n: exactly ``angle`` away."""
        t = nn.functional.normalize(torch.linalg.cross(n, torch.tensor([0.0, 1.0, 0.0]).view(1, 3, 1, 1).expand_as(n), dim=1), dim=1)
        return torch.cos(self.angle) * n + torch.sin(self.angle) * t

    def forward(self, gray: torch.Tensor, exemplar: torch.Tensor | None = None) -> torch.Tensor:
        return self.rotate(self.truth(gray))


def test_evaluate_reports_known_angles_per_stage_and_region():
    estimator = NormalEstimator(TiltedTruth(10.0), TiltedTruth(30.0))
    data = RandomFaces(n=5, res=32)
    result = evaluate(estimator, data, batch_size=2, progress=False, name="toy")
    summary = result.summary.set_index(["stage", "region"])
    assert summary.loc[("coarse", "face"), "mean"] == pytest.approx(10.0, abs=1e-3)
    assert summary.loc[("refined", "detail"), "mean"] == pytest.approx(30.0, abs=1e-3)
    assert summary.loc[("coarse", "face"), "<20"] == 100.0 and summary.loc[("refined", "face"), "<25"] == 0.0
    assert (summary["images"] == 5).all() and (result.summary["split"] == "toy").all()
    assert len(result.per_image) == 5 * 3 * len(REGIONS) and set(result.per_image["image"]) == {str(i) for i in range(5)}


def test_a_region_empty_in_every_image_has_no_rows():
    """Real lab data (prepare_photoface) has an empty detail mask: the evaluation used to end in
    "no pixels to measure" after all the inference."""
    data = RandomFaces(n=3, res=32)
    data.detail.zero_()
    summary = evaluate(NormalEstimator(TiltedTruth(10.0), TiltedTruth(30.0)), data, progress=False).summary
    assert set(summary["region"]) == {"face"}
    assert summary.set_index(["stage", "region"]).loc[("coarse", "face"), "mean"] == pytest.approx(10.0, abs=1e-3)


def test_detail_region_is_measured_separately():
    data = RandomFaces(n=3, res=32)
    data.normal[:, :, data.detail.bool()[0, 0]] = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1)  # detail truth: 90 deg off
    estimator = NormalEstimator(TiltedTruth(0.0), TiltedTruth(0.0))
    table = evaluate_splits(estimator, {"a": data, "b": data}, progress=False)
    summary = table.summary.set_index(["split", "stage", "region"])
    detail, face = summary.loc[("a", "coarse", "detail"), "mean"], summary.loc[("a", "coarse", "face"), "mean"]
    assert detail > 45.0 and 0.0 < face < detail
    # the fine band (sigma 0.5 px at 32 px) sees the detail's edges only; the exact stage scores 0
    assert 1.0 < summary.loc[("a", "coarse", "fine"), "mean"] < detail
    exact = evaluate(estimator, RandomFaces(n=3, res=32), progress=False).summary.set_index(["stage", "region"])
    assert exact.loc[("coarse", "fine"), "mean"] < 1e-3
    assert exact.loc[(DETAIL_FREE, "fine"), "mean"] > 0.0 == exact.loc[("coarse", "fine"), "mean"].round(3)
    assert summary.loc[("b", "refined", "detail"), "mean"] == pytest.approx(detail)


def test_command_line_evaluates_a_run_on_the_benchmark(tmp_path, capsys):
    from hffne_lib.config import get_config, software_note
    from hffne_lib.evaluate import main as evaluate_main
    from hffne_lib.train import main as train_main, open_split

    data_root = tmp_path / "bench"
    assert train_main(["both", "--preset", "ci", "--run-dir", str(tmp_path / "run"), "--no-progress", "--set",
                       f"data_root={data_root}", "coarse_iters=2", "refine_iters=2", "coarse_milestones=()"]) == 0
    out = tmp_path / "report"
    assert evaluate_main([str(tmp_path / "run"), "--splits", "wild_test", "scans", "--out", str(out),
                          "--no-progress"]) == 0
    header = [line for line in (out / "evaluation.md").read_text().splitlines() if line.startswith("- ")]
    assert [line.split(":")[0] for line in header] == ["- git revision", "- checkpoints", "- preset", "- device",
                                                       "- software", "- data manifest hash", "- VGG19 weights",
                                                       "- unit", "- wall time"]
    assert "(iteration 2)" in header[1] and "STAND-IN" in header[6] and header[4] == f"- software: {software_note()}"
    written = pd.read_csv(out / "summary.csv")
    cfg = get_config("ci", data_root=str(data_root))
    estimator = NormalEstimator.from_checkpoints(tmp_path / "run" / "coarse" / "latest.pt",
                                                 tmp_path / "run" / "refiner" / "latest.pt")
    expected = evaluate(estimator, open_split(cfg, "scans"), progress=False, name="scans").summary
    got = written[written["split"] == "scans"].reset_index(drop=True)
    assert got[["stage", "region"]].equals(expected[["stage", "region"]])
    assert got["mean"].to_numpy() == pytest.approx(expected["mean"].to_numpy().astype(float), abs=1e-9)
    capsys.readouterr()
    assert evaluate_main([str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert evaluate_main([str(tmp_path / "run"), "--data-root", str(tmp_path / "no_bench")]) == 2
    assert "no benchmark at" in capsys.readouterr().err and not (tmp_path / "no_bench").exists()
    assert evaluate_main([str(tmp_path / "run"), "--fit-steps", "-1"]) == 2
    assert "steps >= 1" in capsys.readouterr().err
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    assert evaluate_main([str(tmp_path / "run"), "--splits", "scans", "--out", str(out), "--no-progress"]) == 2
    assert capsys.readouterr().err == f"python -m hffne_lib.evaluate: {out / 'evaluation.csv'} exists (use --overwrite)\n"
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before          # the earlier one is kept
    assert evaluate_main([str(tmp_path / "run"), "--splits", "scans", "--out", str(out), "--no-progress",
                          "--overwrite"]) == 0
    assert set(pd.read_csv(out / "summary.csv")["split"]) == {"scans"}
    fitted = tmp_path / "fitted"
    assert evaluate_main([str(tmp_path / "run"), "--splits", "scans", "--fit-steps", "2", "--out", str(fitted),
                          "--no-progress"]) == 0
    fitted_line = next(line for line in (fitted / "evaluation.md").read_text().splitlines() if line.startswith("- fitted"))
    assert fitted_line.startswith("- fitted: test-time fitting (beyond the paper): steps=2,")
    assert fitted_line.endswith("; fitted inside each image's true face mask")
    rows = pd.read_csv(fitted / "summary.csv").set_index(["stage", "region"])["mean"]
    assert rows[("coarse", "face")] == pytest.approx(float(got.set_index(["stage", "region"])["mean"][("coarse", "face")]))
    assert rows[("fitted", "face")] != pytest.approx(rows[("coarse", "face")], abs=1e-6)
    # a split from another data set: real scans prepared by the data command (Table 2's Florence)
    write_textured_face(tmp_path / "florence", size=64)
    prepare_scans(tmp_path / "florence", tmp_path / "scans", size=64, light=(0.0, 20.0), progress=False)
    elsewhere = tmp_path / "elsewhere"
    assert evaluate_main([str(tmp_path / "run"), "--splits", "scans", "--split-root", f"scans={tmp_path / 'scans'}",
                          "--out", str(elsewhere), "--no-progress"]) == 0
    assert f"- splits read elsewhere: scans={tmp_path / 'scans'}\n" in (elsewhere / "evaluation.md").read_text()
    expected = evaluate(estimator, FaceNormalDataset(tmp_path / "scans", "scans"), progress=False, name="scans").summary
    assert pd.read_csv(elsewhere / "summary.csv")["mean"].to_numpy() == pytest.approx(
        expected["mean"].to_numpy().astype(float), abs=1e-9)
    missing = f"scans={tmp_path / 'none'}"
    assert evaluate_main([str(tmp_path / "run"), "--splits", "scans", "--split-root", missing]) == 2
    assert "no data set at" in capsys.readouterr().err
    assert evaluate_main([str(tmp_path / "run"), "--split-root", "faces=x"]) == 2
    assert "split_roots holds 'split=folder' entries" in capsys.readouterr().err
    coarse_only = tmp_path / "coarse_only"                          # fitting needs no refiner
    assert evaluate_main([str(tmp_path / "run" / "coarse"), "--splits", "scans", "--fit-steps", "2", "--out",
                          str(coarse_only), "--no-progress"]) == 0
    assert "no refiner" in (coarse_only / "evaluation.md").read_text()
    alone = pd.read_csv(coarse_only / "summary.csv").set_index(["stage", "region"])["mean"]
    assert set(alone.index.get_level_values("stage")) == {"coarse", "fitted", "detail-free truth"}
    assert alone.to_numpy() == pytest.approx(rows.reindex(alone.index).to_numpy(), abs=1e-9)
    capsys.readouterr()
    assert evaluate_main([str(tmp_path / "run" / "coarse"), "--splits", "scans"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a coarse checkpoint alone has no refiner" in err


def test_data_of_another_resolution_or_without_ground_truth_is_refused():
    from types import SimpleNamespace

    from hffne_lib.evaluate import check_evaluable

    trained_at_64 = SimpleNamespace(provenance={"resolution": 64})
    check_evaluable(trained_at_64, [{"gray": torch.zeros(1, 64, 64)}], "same size")
    with pytest.raises(ValueError, match="bench scans: images are 128 x 128 px but the model was trained at 64 x 64"):
        check_evaluable(trained_at_64, [{"gray": torch.zeros(1, 128, 128)}], "bench scans")
    photos = SimpleNamespace(ground_truth=False, __len__=lambda: 1)
    with pytest.raises(ValueError, match="ffhq wild_train: photos without ground truth, nothing to measure against"):
        check_evaluable(trained_at_64, photos, "ffhq wild_train")
