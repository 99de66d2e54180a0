"""BEYOND THE PAPER: test-time fitting, each face's normals fitted to its own photo at inference.

    estimator.fitting = FitSettings(steps=20)          # hffne_lib.pipeline.NormalEstimator
    fitted = estimator.fit(gray, coarse, mask)         # B x 3 x H x W unit normals

A refiner is one network for every face: it learns the corrections that lower its loss on average
over the training images, and these cost each face some of its shape (docs/beyond_the_paper.md,
"Why the refiner gives up the face"). Fitting makes each face's own correction instead: the normals
N = x / |x| of one face are the variable, x starts at the coarse exemplar R, and a few Adam steps
lower the refinement objective for that face alone,

    lambda_ref * smooth-L1(N, R) + shading_weight * HF shading(N, image) + integrability_weight * |curl N|

(``losses.RefinementObjective`` without the perceptual term, which at the release's scale moves
nothing). The step size is cosine-annealed to 0 over ``steps``. Few steps is the point: the
objective's own optimum, hundreds of steps away, costs the face again (docs/beyond_the_paper.md,
"Test-time fitting", which also finds that the curl, which never reads the photo, makes about
half of the gain, and the shading term without it none). Each face's loss is its own (the batch's losses are summed, and Adam works
per element), so a face's fitted normals do not depend on the faces fitted beside it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import torch

from .conventions import normalize
from .losses import RefinementObjective, check_shading_blurs


@dataclass(frozen=True)
class FitSettings:
    """How many Adam steps at which step size, and the weights of the objective's terms (shading
    and curl as ``config.ExperimentConfig``'s fields of the same names; blurs in px at the model's
    resolution). The defaults are the cpu-preset refiners' best trade (shading 3, robust, presmoothed,
    curl 0.1) and the step count chosen on training images (docs/beyond_the_paper.md)."""

    steps: int = 20
    lr: float = 0.01
    lambda_ref: float = 1.0
    shading_weight: float = 3.0
    shading_sigma: float = 2.0
    shading_robust_scale: float = 0.01
    shading_presmooth: float = 0.75
    integrability_weight: float = 0.1

    def __post_init__(self) -> None:
        if self.steps < 1 or self.lr <= 0:
            raise ValueError(f"fitting needs steps >= 1 and lr > 0, got steps={self.steps}, lr={self.lr}")
        if not (self.shading_weight > 0 or self.integrability_weight > 0):
            raise ValueError("fitting needs shading_weight > 0 or integrability_weight > 0: "
                             "the smooth-L1 to the exemplar alone keeps the exemplar")
        check_shading_blurs(self.shading_sigma, self.shading_presmooth)

    def objective(self) -> RefinementObjective:
        """The objective these settings fit: no perceptual term, so no VGG19."""
        return RefinementObjective(None, self.lambda_ref, 0.0, self.shading_weight, self.shading_sigma,
                                   shading_robust_scale=self.shading_robust_scale,
                                   integrability_weight=self.integrability_weight,
                                   shading_presmooth=self.shading_presmooth)

    def describe(self) -> str:
        """One line for provenance: every setting by name."""
        return "test-time fitting (beyond the paper): " + ", ".join(f"{k}={v}" for k, v in asdict(self).items())


def adam_on_normals(loss: Callable[[torch.Tensor], torch.Tensor], start: torch.Tensor, steps: int, lr: float,
                    on_step: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None) -> torch.Tensor:
    """Adam on N = x / |x|, x starting at ``start`` (B x 3 x H x W), to lower ``loss(N)`` (a
    scalar), its step size cosine-annealed from ``lr`` to 0 over ``steps``. ``on_step(step, N,
    loss)`` sees every step 0..steps before its update (N detached). Returns the final N, detached."""
    if steps < 0:
        raise ValueError(f"need steps >= 0, got {steps}")
    x = start.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(steps, 1))
    for step in range(steps + 1):
        normals = normalize(x)
        value = loss(normals)
        if on_step is not None:
            on_step(step, normals.detach(), value.detach())
        if step < steps:
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
            schedule.step()
    return normals.detach()


def fit_normals(settings: FitSettings, exemplar: torch.Tensor, gray: torch.Tensor, mask: torch.Tensor
                ) -> torch.Tensor:
    """Each face's normals fitted to its grey image, from its exemplar (module docstring).

    exemplar: B x 3 x H x W unit; gray: B x 1 x H x W in [0, 1]; mask: B x 1 x H x W face region.
    Returns B x 3 x H x W unit normals (fp32, no gradient).
    """
    if exemplar.dim() != 4 or exemplar.shape[1] != 3 or gray.shape[1:] != (1, *exemplar.shape[2:]) \
            or mask.shape != gray.shape or gray.shape[0] != exemplar.shape[0]:
        raise ValueError(f"fitting needs exemplar B x 3 x H x W, gray and mask B x 1 x H x W; got "
                         f"{tuple(exemplar.shape)}, {tuple(gray.shape)}, {tuple(mask.shape)}")
    objective = settings.objective()
    exemplar, gray, mask = exemplar.float(), gray.float(), mask.float()

    def summed_over_faces(normals: torch.Tensor) -> torch.Tensor:
        return sum(objective(normals[i:i + 1], exemplar[i:i + 1], None, gray[i:i + 1], mask[i:i + 1])["loss"]
                   for i in range(len(normals)))

    with torch.enable_grad(), torch.autocast(exemplar.device.type, enabled=False):
        return adam_on_normals(summed_over_faces, exemplar, settings.steps, settings.lr)
