"""Training losses. Defaults follow the paper (eq. 10) and the authors' release; all weights settable.

Shapes: normals B x 3 x H x W unit vectors; images B x 3 x H x W in [0, 1]; masks B x 1 x H x W.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .conventions import encode_rgb, surface_slopes
from .filters import band_pass, low_pass
from .vgg import VGG19Features

#: The release divides the mean relu1_2 L1 by 256 * 256 before adding it (the paper's eq. 10).
PERCEPTUAL_RELEASE_SCALE = 1.0 / (256 * 256)


def reconstruction_loss(refined: torch.Tensor, exemplar: torch.Tensor, mask: torch.Tensor | None = None,
                        sigma: float = 0.0) -> torch.Tensor:
    """Smooth-L1 between refined normals and the coarse exemplar (eq. 10's first term).

    BEYOND THE PAPER, ``sigma`` > 0 (px, needs ``mask``): inside the mask only the low frequencies
    (``filters.low_pass``) of both are compared, so the exemplar gives the global shape and leaves
    the fine band free for the image terms; outside it the normals are compared as they are.
    """
    if sigma > 0:
        inside = mask.to(refined.dtype)
        refined = low_pass(refined, mask, sigma) * inside + refined * (1 - inside)
        exemplar = low_pass(exemplar, mask, sigma) * inside + exemplar * (1 - inside)
    return F.smooth_l1_loss(refined, exemplar)


class PerceptualLoss(nn.Module):
    """Mean L1 between VGG19 relu1_2 of the RGB image and of the normals as an image (n+1)/2,
    times ``scale`` (default: the release's 1 / (256 * 256)). Returns a scalar."""

    def __init__(self, vgg: VGG19Features, scale: float = PERCEPTUAL_RELEASE_SCALE, layer: str = "relu1_2"):
        super().__init__()
        self.vgg = vgg.requires_grad_(False)
        self.scale = scale
        self.layer = layer

    def forward(self, normals: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        """B x 3 x H x W unit normals and B x 3 x H x W RGB in [0, 1] -> a scalar."""
        target = self.vgg(rgb, (self.layer,))[self.layer]
        features = self.vgg(encode_rgb(normals), (self.layer,))[self.layer]
        return F.l1_loss(features, target) * self.scale


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of B x 1 x H x W values over mask pixels (all pixels when mask is None)."""
    if mask is None:
        return values.mean()
    weight = mask.to(values.dtype)
    return (values * weight).sum() / weight.sum().clamp_min(1.0)


def supervised_normal_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
                           kind: str = "cosine") -> torch.Tensor:
    """Coarse-stage loss against ground truth: 1 - cos(pred, target) or L1, within the mask."""
    if kind == "cosine":
        per_pixel = 1.0 - (pred * target).sum(dim=1, keepdim=True)
    elif kind == "l1":
        per_pixel = (pred - target).abs().mean(dim=1, keepdim=True)
    else:
        raise ValueError(f"unknown supervised loss {kind!r}; use 'cosine' or 'l1'")
    return masked_mean(per_pixel, mask)


def gan_loss(logits: torch.Tensor, is_real: bool) -> torch.Tensor:
    """pix2pix's (vanilla, BCE-with-logits) GAN loss against an all-real or all-fake target."""
    target = torch.ones_like(logits) if is_real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


# BEYOND THE PAPER: a shading term on high frequencies (ExperimentConfig.shading_weight).
def fit_lighting(gray: torch.Tensor, normals: torch.Tensor, mask: torch.Tensor, ridge: float = 1e-6) -> torch.Tensor:
    """Least-squares first-order lighting per image: gray ~ n . l + ambient over the mask.

    gray B x 1 x H x W in [0, 1], normals B x 3 x H x W, mask B x 1 x H x W -> B x 4 (l, ambient).
    ``l`` absorbs a constant albedo; attached shadows are ignored (the model is linear).
    """
    weight = mask.to(gray.dtype).flatten(1)                                    # B x P
    design = torch.cat([normals, torch.ones_like(gray)], dim=1).flatten(2)    # B x 4 x P
    gram = torch.einsum("bip,bjp,bp->bij", design, design, weight)
    rhs = torch.einsum("bip,bp,bp->bi", design, gray.flatten(1), weight)
    eye = torch.eye(4, device=gray.device, dtype=gray.dtype)
    return torch.linalg.solve(gram + ridge * weight.sum(1).view(-1, 1, 1) * eye, rhs)


def check_shading_blurs(sigma: float, presmooth: float) -> None:
    """One-line ValueError unless the shading term's blurs (px) are usable: 0 <= presmooth < sigma."""
    if not 0.0 <= presmooth < sigma:
        raise ValueError(f"shading_presmooth is a blur in px in [0, shading_sigma={sigma}), got {presmooth}"
                         + ("" if sigma > 0 else "; shading_sigma must be above 0"))


def high_frequency_shading_loss(normals: torch.Tensor, gray: torch.Tensor, exemplar: torch.Tensor,
                                mask: torch.Tensor, sigma: float, robust_scale: float = 0.0,
                                presmooth: float = 0.0) -> torch.Tensor:
    """BEYOND THE PAPER. L1 between the high frequencies of the grey image and of the shading of
    ``normals`` under the light fitted to the exemplar (no gradient through the fit).

    ``robust_scale`` s > 0 (grey units) scores each residual r by Geman-McClure, s r^2 / (r^2 + s^2),
    in place of |r| (same units, slope at most 0.65): residuals far above s (albedo edges)
    saturate at s and stop pulling. ``presmooth`` > 0 (px) blurs the image and the shading
    first (``filters.band_pass``): pixel noise and 8-bit steps, which the high-pass passes whole, drop out.
    normals, exemplar: B x 3 x H x W unit; gray, mask: B x 1 x H x W. Returns a scalar.
    """
    with torch.no_grad():
        light = fit_lighting(gray, exemplar, mask)
    shading = (normals * light[:, :3, None, None]).sum(1, keepdim=True) + light[:, 3:, None, None]
    residual = band_pass(shading, mask, sigma, presmooth) - band_pass(gray, mask, sigma, presmooth)
    if robust_scale > 0:
        return masked_mean(robust_scale * residual ** 2 / (residual ** 2 + robust_scale ** 2), mask)
    return masked_mean(residual.abs(), mask)


# BEYOND THE PAPER: normals of a real surface are integrable (ExperimentConfig.integrability_weight).
def curl(normals: torch.Tensor) -> torch.Tensor:
    """Curl dp/dy - dq/dx of the slope field (p, q) = ``conventions.surface_slopes(normals)``, by
    forward differences on each 2 x 2 pixel cell; zero for the normals of any height field sampled
    on the pixel grid. B x 3 x H x W -> B x 1 x (H-1) x (W-1), per pixel (image rows grow down,
    so dp/dy = -(p[row+1] - p[row]))."""
    p, q = surface_slopes(normals).unbind(1)
    dp_dy = -(p[:, 1:, :-1] - p[:, :-1, :-1])
    dq_dx = q[:, :-1, 1:] - q[:, :-1, :-1]
    return (dp_dy - dq_dx)[:, None]


def integrability_loss(normals: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """BEYOND THE PAPER. Mean |curl| (``curl``) over the 2 x 2 pixel cells wholly inside the mask:
    how far the normals are from those of any surface. normals B x 3 x H x W, mask B x 1 x H x W
    -> scalar (slope units per pixel). The curl scales with the slopes, so the term also rewards
    flattening the face a little (docs/beyond_the_paper.md, "Integrable normals")."""
    inside = mask.bool()
    cells = inside[:, :, 1:, 1:] & inside[:, :, :-1, :-1] & inside[:, :, 1:, :-1] & inside[:, :, :-1, 1:]
    return masked_mean(curl(normals).abs(), cells)


class RefinementObjective(nn.Module):
    """The refinement loss (eq. 10) with the beyond-the-paper options; weights as in ExperimentConfig.

    lambda_ref * smooth-L1(N, R) + perceptual_weight * perceptual(N, rgb)
    [+ shading_weight * high-frequency shading (in fp32, outside autocast; robust with
     shading_robust_scale > 0; presmoothed by shading_presmooth px when > 0)
     + integrability_weight * mean |curl| of N (fp32);
     reconstruction_sigma > 0 compares only N's and R's low frequencies inside the mask].
    forward(refined N, exemplar R: B x 3 x H x W; rgb B x 3 x H x W; gray, mask B x 1 x H x W)
    -> {"loss": total, "reconstruction"[, "perceptual"][, "shading"][, "integrability"]: unweighted
    terms}, scalars. ``perceptual`` None leaves that term out (then rgb may be None).
    """

    def __init__(self, perceptual: PerceptualLoss | None, lambda_ref: float = 1.0, perceptual_weight: float = 1.0,
                 shading_weight: float = 0.0, shading_sigma: float = 2.0, reconstruction_sigma: float = 0.0,
                 shading_robust_scale: float = 0.0, integrability_weight: float = 0.0,
                 shading_presmooth: float = 0.0):
        super().__init__()
        self.perceptual = perceptual
        self.lambda_ref = lambda_ref
        self.perceptual_weight = perceptual_weight
        self.shading_weight = shading_weight
        self.shading_sigma = shading_sigma
        self.reconstruction_sigma = reconstruction_sigma
        self.shading_robust_scale = shading_robust_scale
        self.integrability_weight = integrability_weight
        self.shading_presmooth = shading_presmooth

    @property
    def terms(self) -> list[str]:
        """Names of the unweighted terms ``forward`` returns beside "loss"."""
        return (["reconstruction"] + (["perceptual"] if self.perceptual is not None else [])
                + (["shading"] if self.shading_weight else [])
                + (["integrability"] if self.integrability_weight else []))

    def forward(self, refined: torch.Tensor, exemplar: torch.Tensor, rgb: torch.Tensor | None, gray: torch.Tensor,
                mask: torch.Tensor, integrability_scale: float = 1.0) -> dict[str, torch.Tensor]:
        """``integrability_scale`` multiplies integrability_weight (the warm-up ramp of training)."""
        terms = {"reconstruction": reconstruction_loss(refined, exemplar, mask, self.reconstruction_sigma)}
        loss = self.lambda_ref * terms["reconstruction"]
        if self.perceptual is not None:
            terms["perceptual"] = self.perceptual(refined, rgb)
            loss = loss + self.perceptual_weight * terms["perceptual"]
        if self.shading_weight:
            with torch.autocast(refined.device.type, enabled=False):
                terms["shading"] = high_frequency_shading_loss(refined.float(), gray.float(), exemplar.float(),
                                                               mask, self.shading_sigma, self.shading_robust_scale,
                                                               self.shading_presmooth)
            loss = loss + self.shading_weight * terms["shading"]
        if self.integrability_weight:
            with torch.autocast(refined.device.type, enabled=False):
                terms["integrability"] = integrability_loss(refined.float(), mask)
            loss = loss + integrability_scale * self.integrability_weight * terms["integrability"]
        return {"loss": loss, **terms}
