"""Stage 2, the exemplar-based refinement network phi(I, R) and its Table 3 variants.

    code  = E_R(R)                 normal encoder: frozen VGG19 to relu5_2, then a code head
    feats = E_I(I)                 face encoder: stem + four residual down stages
    N     = D_N(feats, code)       decoder: four up blocks whose last conv mixes in the code

``RefinerConfig.architecture`` picks how the exemplar R enters (the paper's Table 3):
  "A3"     modulated/demodulated convolution in every up block (the paper's model, default)
  "adain"  a plain conv followed by AdaIN driven by the code
  "concat" 'w/o modulation': the code, broadcast, concatenated with the features
  "A2"     exemplar VGG features concatenated with the face features at the bottleneck
  "A1"     the exemplar concatenated with the input image as a condition (no normal encoder)

``RefinerConfig.residual`` (BEYOND THE PAPER, off by default) makes the decoder's output a correction
to the exemplar, N = normalize(R + D_N(...)), with the last convolution zero-initialised so that
N = R before any training. ``RefinerConfig.residual_highpass`` (BEYOND THE PAPER, off by default)
high-passes that correction first, N = normalize(R + D_N - G_sigma * D_N), so that the exemplar's low
frequencies pass through and the refiner can change only the fine band.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .conventions import normalize
from .filters import gaussian_blur
from .vgg import VGG19Features

ARCHITECTURES = ("A1", "A2", "A3", "adain", "concat")
VGG_WIDTH = 512  # channels of VGG19 relu5_2


@dataclass
class RefinerConfig:
    """Architecture settings. The defaults are the authors' released model."""

    architecture: str = "A3"
    base_width: int = 64               # face encoder widths: base * (1, 2, 4, 8, 16)
    code_dim: int = 512                # length of the normal code z
    kernel_sizes: tuple[int, ...] = (3, 3, 5, 5)  # mixing-conv kernel of each up block
    modulation: str = "batched"        # "grouped" (the authors' per-sample groups) or "batched"
    train_encoder_vgg: bool = False    # the paper freezes it; the release's script unfreezes it
    residual: bool = False             # BEYOND THE PAPER: N = normalize(R + D_N), N = R at start
    residual_highpass: float = 0.0     # BEYOND THE PAPER: > 0 (px, with residual): the correction
                                       # minus its Gaussian blur of this sigma, so R's low frequencies stay

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"unknown refiner architecture {self.architecture!r}; choose one of {ARCHITECTURES}")
        if self.modulation not in ("grouped", "batched"):
            raise ValueError(f"modulation must be 'grouped' or 'batched', got {self.modulation!r}")
        if len(self.kernel_sizes) != 4:
            raise ValueError(f"kernel_sizes needs one size per up block (4), got {self.kernel_sizes}")
        self.kernel_sizes = tuple(self.kernel_sizes)
        if self.residual_highpass < 0 or (self.residual_highpass and not self.residual):
            raise ValueError(f"residual_highpass is a Gaussian sigma in px >= 0 that high-passes the residual "
                             f"correction; it needs residual=True (got {self.residual_highpass}, residual={self.residual})")

    @property
    def widths(self) -> list[int]:
        return [self.base_width * 2 ** level for level in range(5)]


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated + demodulated k x k convolution, no bias (eqs. 4-7).

    x: B x C x H x W, code: B x code_dim x 1 x 1 -> B x C x H x W.
    s = style(code) (one scale per input channel); w' = w * s / sqrt(C k^2);
    w'' = w' / sqrt(sum_{in,kh,kw} w'^2 + 1e-8), per sample and output channel.
    ``implementation="grouped"`` convolves each sample with its own filters (a grouped conv, as the
    authors do); ``"batched"`` scales the activations by s, convolves with the shared weight and
    scales the output by the demodulation factor: the same maths, one ordinary convolution.
    """

    def __init__(self, code_dim: int, channels: int, kernel_size: int = 3, implementation: str = "batched"):
        super().__init__()
        self.kernel_size = kernel_size
        self.implementation = implementation
        self.scale = 1.0 / math.sqrt(channels * kernel_size ** 2)
        self.style = nn.Conv2d(code_dim, channels, 1)
        self.weight = nn.Parameter(torch.randn(1, channels, channels, kernel_size, kernel_size))

    def demodulation(self, style: torch.Tensor) -> torch.Tensor:
        """B x C_in style scales -> B x C_out factors 1 / sqrt(sum (w * s * scale)^2 + 1e-8)."""
        w2 = (self.scale * self.weight[0]).pow(2).sum(dim=(2, 3))  # C_out x C_in
        return torch.rsqrt(style.pow(2) @ w2.t() + 1e-8)

    def forward(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        style = self.style(code).view(batch, channels)
        pad = self.kernel_size // 2
        if self.implementation == "batched":
            weight = (self.scale * self.weight[0]).to(x.dtype)
            out = F.conv2d(x * style.view(batch, channels, 1, 1), weight, padding=pad)
            return out * self.demodulation(style).view(batch, channels, 1, 1).to(out.dtype)
        weight = self.scale * self.weight * style.view(batch, 1, channels, 1, 1)
        weight = weight * torch.rsqrt(weight.pow(2).sum(dim=(2, 3, 4)) + 1e-8).view(batch, channels, 1, 1, 1)
        weight = weight.view(batch * channels, channels, self.kernel_size, self.kernel_size)
        out = F.conv2d(x.reshape(1, batch * channels, height, width), weight, padding=pad, groups=batch)
        return out.view(batch, channels, height, width)


class AdaINConv2d(nn.Module):
    """'AdaIN' variant: k x k conv, instance norm, per-channel scale and bias from the code.

    x: B x C x H x W, code: B x code_dim x 1 x 1 -> B x C x H x W.
    """

    def __init__(self, code_dim: int, channels: int, kernel_size: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2)
        self.style = nn.Conv2d(code_dim, 2 * channels, 1)

    def forward(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.style(code).chunk(2, dim=1)
        return F.instance_norm(self.conv(x)) * (1 + gamma) + beta


class ConcatConv2d(nn.Module):
    """'w/o modulation' variant: [x, broadcast(project(code))] -> k x k conv.

    x: B x C x H x W, code: B x code_dim x 1 x 1 -> B x C x H x W.
    """

    def __init__(self, code_dim: int, channels: int, kernel_size: int = 3):
        super().__init__()
        self.project = nn.Conv2d(code_dim, channels, 1)
        self.conv = nn.Conv2d(2 * channels, channels, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        code_map = self.project(code).expand(-1, -1, x.shape[2], x.shape[3])
        return self.conv(torch.cat([x, code_map], dim=1))


class PlainConv2d(nn.Module):
    """A1/A2: an ordinary k x k conv in the mixing slot; the code is ignored (it is None)."""

    def __init__(self, code_dim: int, channels: int, kernel_size: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor, code: torch.Tensor | None) -> torch.Tensor:
        return self.conv(x)


def _mixing_layer(config: RefinerConfig, channels: int, kernel_size: int) -> nn.Module:
    if config.architecture == "A3":
        return ModulatedConv2d(config.code_dim, channels, kernel_size, config.modulation)
    layer = {"adain": AdaINConv2d, "concat": ConcatConv2d}.get(config.architecture, PlainConv2d)
    return layer(config.code_dim, channels, kernel_size)


class NormalEncoder(nn.Module):
    """E_R: exemplar normals B x 3 x H x W in [-1, 1] -> code B x code_dim x 1 x 1.

    The normals go straight into VGG19 (with its ImageNet mean/std normalisation), as the
    authors' release does; relu5_2 (B x 512 x H/16 x W/16) feeds the code head.
    ``spatial=True`` (architecture A2) returns relu5_2 itself instead of the code.
    """

    def __init__(self, code_dim: int = 512, train_vgg: bool = False):
        super().__init__()
        self.vgg = VGG19Features("relu5_2")
        self.vgg.requires_grad_(train_vgg)
        lrelu = lambda: nn.LeakyReLU(0.2, True)  # noqa: E731
        # Indices match the release's feature2vector (activations and pool included).
        self.code_head = nn.Sequential(
            nn.Conv2d(VGG_WIDTH, code_dim, 4, 2, 2), lrelu(),
            nn.Conv2d(code_dim, code_dim, 3, 1, 1), lrelu(),
            nn.Conv2d(code_dim, code_dim, 4, 2, 2), lrelu(),
            nn.Conv2d(code_dim, code_dim, 3, 1, 1), lrelu(),
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(code_dim, code_dim // 2, 1), lrelu(),
            nn.Conv2d(code_dim // 2, code_dim // 2, 1), lrelu(),
            nn.Conv2d(code_dim // 2, code_dim, 1),
        )

    def vgg_features(self, exemplar: torch.Tensor) -> torch.Tensor:
        """VGG19 relu5_2 features of the exemplar normals: B x 3 x H x W -> B x 512 x H/16 x W/16."""
        return self.vgg(exemplar, ("relu5_2",))["relu5_2"]

    def forward(self, exemplar: torch.Tensor) -> torch.Tensor:
        return self.code_head(self.vgg_features(exemplar))


class ResidualBlock(nn.Module):
    """1x1 projection p, then (p + conv3x3-BN-LReLU(0.2)-conv3x3 (p)) / sqrt 2. Changes width."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.project = nn.Conv2d(in_channels, out_channels, 1)
        self.body = nn.Sequential(
            nn.Conv2d(out_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(0.2, True), nn.Conv2d(out_channels, out_channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.project(x)
        return (self.body(p) + p) / math.sqrt(2)


class FaceEncoder(nn.Module):
    """E_I: image B x in_channels x H x W -> five features, B x widths[i] x H/2^i x W/2^i."""

    def __init__(self, widths: list[int], in_channels: int = 1):
        super().__init__()
        w0 = widths[0]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, w0, 3, padding=1), nn.BatchNorm2d(w0), nn.LeakyReLU(0.1, True),
            nn.Conv2d(w0, w0, 3, padding=1), nn.BatchNorm2d(w0), nn.LeakyReLU(0.1, True))
        self.downs = nn.ModuleList(
            nn.Sequential(nn.Conv2d(w_in, w_in, 4, 2, 1), nn.LeakyReLU(0.1, True), ResidualBlock(w_in, w_out))
            for w_in, w_out in zip(widths[:-1], widths[1:]))

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        feats = [self.stem(image)]
        for down in self.downs:
            feats.append(down(feats[-1]))
        return feats


class UpBlock(nn.Module):
    """2x2 transposed conv halving the width; concat skip[:, ::4]; 1x1 conv, LReLU, 3x3 conv,
    LReLU; the mixing conv (modulated in A3); plus a 1x1 shortcut of the upsampled input.

    x: B x C_in x h x w, skip: B x C_in/2 x 2h x 2w -> B x C_out x 2h x 2w.
    """

    def __init__(self, in_channels: int, out_channels: int, mixing: nn.Module):
        super().__init__()
        half = in_channels // 2
        self.upsample = nn.ConvTranspose2d(in_channels, half, 2, 2)
        self.fuse = nn.Sequential(
            nn.Conv2d(half + (half + 3) // 4, out_channels, 1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1), nn.LeakyReLU(0.2, True))
        self.mix = mixing
        self.shortcut = nn.Conv2d(half, out_channels, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor, code: torch.Tensor | None) -> torch.Tensor:
        up = self.upsample(x)
        h = self.fuse(torch.cat([up, skip[:, ::4]], dim=1))
        return self.mix(h, code) + self.shortcut(up)


class NormalDecoder(nn.Module):
    """D_N: face features + code -> B x 3 x H x W in [-1, 1] (tanh; not yet unit length). With
    ``config.residual`` its last convolution starts at zero, so its output starts at 0."""

    def __init__(self, config: RefinerConfig):
        super().__init__()
        widths = config.widths
        self.ups = nn.ModuleList(
            UpBlock(widths[4 - i], widths[3 - i], _mixing_layer(config, widths[3 - i], k))
            for i, k in enumerate(config.kernel_sizes))
        self.head = nn.Sequential(
            nn.Conv2d(widths[0], widths[0], 3, padding=1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(widths[0], 3, 3, padding=1), nn.Tanh())
        if config.residual:
            nn.init.zeros_(self.head[2].weight)
            nn.init.zeros_(self.head[2].bias)

    def forward(self, feats: list[torch.Tensor], code: torch.Tensor | None) -> torch.Tensor:
        h = feats[-1]
        for up, skip in zip(self.ups, reversed(feats[:-1])):
            h = up(h, skip, code)
        return self.head(h)


class Refiner(nn.Module):
    """phi(I, R): grey image B x 1 x H x W in [0, 1] and exemplar B x 3 x H x W unit normals
    -> refined unit normals B x 3 x H x W. H and W must be divisible by 16 (32 for the VGG
    code head to see at least 2 x 2)."""

    def __init__(self, config: RefinerConfig | None = None):
        super().__init__()
        self.config = config = config or RefinerConfig()
        widths = config.widths
        image_channels = 4 if config.architecture == "A1" else 1
        self.normal_encoder = (None if config.architecture == "A1"
                               else NormalEncoder(config.code_dim, config.train_encoder_vgg))
        self.face_encoder = FaceEncoder(widths, image_channels)
        if config.architecture == "A2":
            self.exemplar_fusion = nn.Sequential(
                nn.Conv2d(widths[4] + VGG_WIDTH, widths[4], 1), nn.LeakyReLU(0.2, True))
        self.decoder = NormalDecoder(config)

    @property
    def vgg(self) -> VGG19Features | None:
        """The normal encoder's VGG19 (None for A1, which has no normal encoder)."""
        return None if self.normal_encoder is None else self.normal_encoder.vgg

    def forward(self, gray: torch.Tensor, exemplar: torch.Tensor) -> torch.Tensor:
        """B x 1 x H x W grey in [0, 1], B x 3 x H x W exemplar -> B x 3 x H x W unit normals;
        ValueError where H or W is not a multiple of 16."""
        if gray.shape[-1] % 16 or gray.shape[-2] % 16:
            raise ValueError(f"refiner input {tuple(gray.shape[-2:])} must be divisible by 16")
        decoded = self.decode(gray, exemplar)
        if not self.config.residual:
            return normalize(decoded)
        if self.config.residual_highpass:
            decoded = decoded - gaussian_blur(decoded, self.config.residual_highpass)
        return normalize(exemplar + decoded)

    def decode(self, gray: torch.Tensor, exemplar: torch.Tensor) -> torch.Tensor:
        """D_N's output for this architecture, before the residual sum and normalisation
        (B x 3 x H x W in [-1, 1])."""
        arch = self.config.architecture
        if arch == "A1":
            return self.decoder(self.face_encoder(torch.cat([gray, exemplar], dim=1)), None)
        feats = self.face_encoder(gray)
        if arch == "A2":
            exemplar_feats = self.normal_encoder.vgg_features(exemplar)
            feats[-1] = self.exemplar_fusion(torch.cat([feats[-1], exemplar_feats], dim=1))
            return self.decoder(feats, None)
        return self.decoder(feats, self.normal_encoder(exemplar))
