"""Stage 1, the coarse exemplar network: the pix2pix U-Net generator and PatchGAN discriminator.

At ``depth=8, base_width=64`` the generator's state-dict keys and forward pass are those of the
authors' released ExemplarModel.pkl (conv1..conv8, convK_bn, deconv1..deconv8, deconvK_bn), so
their weights load as they are. Smaller depths and widths serve small CI resolutions
(the input side must be divisible by 2**depth).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .conventions import normalize


@dataclass
class CoarseConfig:
    """Architecture settings of stage 1. The defaults are the paper's (256 x 256 input)."""

    base_width: int = 64
    depth: int = 8                   # input side must be divisible by 2**depth
    test_time_dropout: bool = False  # the release keeps dropout on at test time
    disc_width: int = 64
    disc_layers: int = 3             # 3: the 70 x 70 PatchGAN

    def build_generator(self) -> "UNetGenerator":
        """The exemplar network: grey 1 x H x W in, normals 3 x H x W out."""
        return UNetGenerator(1, self.base_width, self.depth, self.test_time_dropout)

    def build_discriminator(self) -> "PatchDiscriminator":
        """The PatchGAN: grey image and normals (4 channels) in, a map of real/fake logits out."""
        return PatchDiscriminator(4, self.disc_width, self.disc_layers)


def _encoder_widths(depth: int, base_width: int) -> list[int]:
    """Widths of the encoder levels: base, 2x, 4x, then 8x base for every deeper level."""
    return [base_width * min(2 ** level, 8) for level in range(depth)]


class UNetGenerator(nn.Module):
    """Grey face -> unit normals. B x in_channels x H x W in [0, 1] -> B x 3 x H x W.

    Encoder: ``depth`` 4x4 stride-2 convs, LeakyReLU(0.2) before each but the first,
    BatchNorm on all but the first and last. Decoder: ``depth`` 4x4 stride-2 transposed convs
    with skip concatenation, ReLU before each, BatchNorm on all but the last, dropout 0.5 after
    the first three (in training, or always with ``test_time_dropout`` as the release does);
    tanh, then L2 normalisation.
    """

    def __init__(self, in_channels: int = 1, base_width: int = 64, depth: int = 8,
                 test_time_dropout: bool = False, dropout_layers: int = 3):
        super().__init__()
        if depth < 2:
            raise ValueError(f"UNetGenerator depth must be >= 2, got {depth}")
        self.depth = depth
        self.test_time_dropout = test_time_dropout
        self.dropout_layers = dropout_layers
        widths = _encoder_widths(depth, base_width)
        in_widths = [in_channels] + widths[:-1]
        for level in range(1, depth + 1):
            self.add_module(f"conv{level}", nn.Conv2d(in_widths[level - 1], widths[level - 1], 4, 2, 1))
            if 1 < level < depth:
                self.add_module(f"conv{level}_bn", nn.BatchNorm2d(widths[level - 1]))
        # deconv k maps level depth-k+1 up to level depth-k; it reads the previous output
        # concatenated with the matching encoder skip (except the first, which has no skip).
        for k in range(1, depth + 1):
            in_w = widths[depth - 1] if k == 1 else 2 * widths[depth - k]
            out_w = widths[depth - k - 1] if k < depth else 3
            self.add_module(f"deconv{k}", nn.ConvTranspose2d(in_w, out_w, 4, 2, 1))
            if k < depth:
                self.add_module(f"deconv{k}_bn", nn.BatchNorm2d(out_w))

    def forward(self, gray: torch.Tensor) -> torch.Tensor:
        """B x in_channels x H x W in [0, 1] -> B x 3 x H x W unit normals; ValueError where H or W
        is not a multiple of 2**depth."""
        side = 2 ** self.depth
        if gray.shape[-1] % side or gray.shape[-2] % side:
            raise ValueError(f"input {tuple(gray.shape[-2:])} is not divisible by 2**depth={side}")
        skips = []
        h = gray
        for level in range(1, self.depth + 1):
            if level > 1:
                h = F.leaky_relu(h, 0.2)
            h = getattr(self, f"conv{level}")(h)
            if 1 < level < self.depth:
                h = getattr(self, f"conv{level}_bn")(h)
            skips.append(h)
        dropout_active = self.training or self.test_time_dropout
        for k in range(1, self.depth + 1):
            h = getattr(self, f"deconv{k}")(F.relu(h))
            if k < self.depth:
                h = getattr(self, f"deconv{k}_bn")(h)
                if k <= self.dropout_layers:
                    h = F.dropout(h, 0.5, training=dropout_active)
                h = torch.cat([h, skips[self.depth - k - 1]], dim=1)
        return normalize(torch.tanh(h))


class PatchDiscriminator(nn.Module):
    """pix2pix PatchGAN: (grey image, normal map) -> a grid of real/fake logits.

    B x (in_channels) x H x W -> B x 1 x H' x W'. With ``n_layers=3`` and 256 px input each logit
    sees a 70 x 70 patch. Conv 4x4: stride 2 for the first ``n_layers``, then stride 1 twice;
    LeakyReLU(0.2); BatchNorm on all but the first and the last.
    """

    def __init__(self, in_channels: int = 4, base_width: int = 64, n_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, base_width, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        width = base_width
        for level in range(1, n_layers + 1):
            next_width = base_width * min(2 ** level, 8)
            stride = 2 if level < n_layers else 1
            layers += [nn.Conv2d(width, next_width, 4, stride, 1, bias=False),
                       nn.BatchNorm2d(next_width), nn.LeakyReLU(0.2, True)]
            width = next_width
        layers.append(nn.Conv2d(width, 1, 4, 1, 1))
        self.model = nn.Sequential(*layers)

    def forward(self, gray: torch.Tensor, normals: torch.Tensor) -> torch.Tensor:
        """B x 1 x H x W grey and B x 3 x H x W normals -> B x 1 x H' x W' logits (real > 0)."""
        return self.model(torch.cat([gray, normals], dim=1))
