"""Test-time fitting (beyond the paper): it recovers known detail, each face alone, and refuses bad settings."""
from __future__ import annotations

import pytest
import torch

from hffne_lib.conventions import normalize
from hffne_lib.evaluate import DETAIL_FREE, FITTED, evaluate
from hffne_lib.fitting import FitSettings, adam_on_normals, fit_normals
from hffne_lib.pipeline import NormalEstimator
from hffne_lib.probe import mean_errors
from test_evaluate import TiltedTruth
from test_probe import ridged_face
from test_train import RandomFaces


def test_fitting_pulls_the_ridges_back_into_a_smooth_exemplar():
    """The exemplar is the ridged truth low-passed; 20 steps fitted to the Lambertian image bring
    the ridges back: the fine band's error falls by a quarter, the face's by a fifth. These ridges
    shade far more strongly than wrinkles (residuals near 0.1), so the robust scale is 0.1: at the
    default 0.01 their residuals would saturate and count as albedo."""
    truth, exemplar, gray, mask = ridged_face()
    before = mean_errors(exemplar, truth, mask, mask)
    fitted = fit_normals(FitSettings(steps=20, shading_robust_scale=0.1), exemplar, gray, mask)
    after = mean_errors(fitted, truth, mask, mask)
    assert after["fine"] < 0.75 * before["fine"] and after["face"] < 0.8 * before["face"]
    assert torch.allclose(fitted.norm(dim=1), torch.ones(1, *fitted.shape[2:]), atol=1e-5)
    assert not fitted.requires_grad


def test_a_face_is_fitted_as_if_alone():
    """Two faces fitted together give what each gives alone: the objective is summed over faces,
    and Adam works per element, so neither the batch's size nor its other faces change a face."""
    truth, exemplar, gray, mask = ridged_face()
    other = normalize(exemplar.flip(-1) + 0.1)
    pair = fit_normals(FitSettings(steps=5), torch.cat([exemplar, other]), gray.repeat(2, 1, 1, 1),
                       torch.cat([mask, mask.flip(-2)]))
    alone = fit_normals(FitSettings(steps=5), exemplar, gray, mask)
    assert torch.allclose(pair[:1], alone, atol=1e-6)
    assert not torch.allclose(pair[1:], alone, atol=1e-3)


def test_adam_on_normals_sees_every_step_and_zero_steps_keep_the_start():
    start = torch.randn(2, 3, 8, 8)
    seen = []
    kept = adam_on_normals(lambda n: (n[:, 2] - 1).abs().mean(), start, 0, 0.01, lambda *a: seen.append(a[0]))
    assert seen == [0] and torch.allclose(kept, normalize(start))
    seen.clear()
    turned = adam_on_normals(lambda n: (1 - n[:, 2]).mean(), start, 30, 0.1, lambda *a: seen.append(a[0]))
    assert seen == list(range(31))
    assert turned[:, 2].mean() > normalize(start)[:, 2].mean() + 0.2   # towards +z, as the loss asks


@pytest.mark.parametrize("settings, message", [
    (dict(steps=0), "steps >= 1"), (dict(lr=0.0), "lr > 0"),
    (dict(shading_weight=0.0, integrability_weight=0.0), "keeps the exemplar"),
    (dict(shading_sigma=0.0, shading_presmooth=0.0), "shading_sigma must be above 0"),
    (dict(shading_presmooth=2.0), "in \\[0, shading_sigma=2.0\\), got 2.0")])
def test_bad_fit_settings_say_what_is_wrong(settings, message):
    with pytest.raises(ValueError, match=message):
        FitSettings(**settings)


def test_fitting_refuses_mismatched_shapes():
    truth, exemplar, gray, mask = ridged_face()
    with pytest.raises(ValueError, match="B x 1 x H x W"):
        fit_normals(FitSettings(), exemplar, gray[..., :-1], mask)


def test_evaluate_adds_the_fitted_stage_only_when_asked():
    data = RandomFaces(n=3, res=32)
    estimator = NormalEstimator(TiltedTruth(10.0), TiltedTruth(30.0))
    plain = evaluate(estimator, data, progress=False).summary
    assert FITTED not in set(plain["stage"])
    estimator.fitting = FitSettings(steps=3)
    summary = evaluate(estimator, data, progress=False).summary.set_index(["stage", "region"])
    assert set(summary.index.get_level_values("stage")) == {"coarse", "refined", FITTED, DETAIL_FREE}
    # three small steps from the 10-degree exemplar move it, but not far
    assert summary.loc[(FITTED, "face"), "mean"] != pytest.approx(10.0, abs=1e-4)
    assert summary.loc[(FITTED, "face"), "mean"] == pytest.approx(10.0, abs=3.0)
    with pytest.raises(ValueError, match="no fitting settings"):
        NormalEstimator(TiltedTruth(1.0), TiltedTruth(2.0)).fit(*[torch.zeros(1, c, 8, 8) for c in (1, 3, 1)])
