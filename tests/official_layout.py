"""Test-only stand-in for the authors' released networks, written from PAPER.md's facts and the
release's state-dict layout (module names as in official_checkpoint_keys.json), so that a
seeded checkpoint in the official format can be saved and its outputs compared with ours.
It is kept deliberately literal (one forward per module, the release's order of operations).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def vgg19_features() -> nn.Sequential:
    layers, c = [], 3
    for w in [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"]:
        if w == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, w, 3, padding=1), nn.ReLU(True)]
            c = w
    return nn.Sequential(*layers)


class VGGHolder(nn.Module):
    def __init__(self):
        super().__init__()
        self.vgg_model = nn.Module()
        self.vgg_model.features = vgg19_features()
        self.vgg_feature = self.vgg_model.features  # the release's alias

    def forward(self, x):
        x = (x - IMAGENET_MEAN) / IMAGENET_STD
        for i, layer in enumerate(self.vgg_feature):
            x = layer(x)
            if i == 31:
                return x


class ReleaseEncoder(nn.Module):
    def __init__(self, d=512):
        super().__init__()
        self.vgg = VGGHolder()
        self.feature2vector = nn.Sequential(
            nn.Conv2d(d, d, 4, 2, 2), nn.LeakyReLU(0.2), nn.Conv2d(d, d, 3, 1, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(d, d, 4, 2, 2), nn.LeakyReLU(0.2), nn.Conv2d(d, d, 3, 1, 1), nn.LeakyReLU(0.2),
            nn.AdaptiveAvgPool2d((1, 1)), nn.Conv2d(d, d // 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(d // 2, d // 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(d // 2, d, 1))

    def forward(self, x):
        return self.feature2vector(self.vgg(x))


class Res(nn.Module):
    def __init__(self, i, o):
        super().__init__()
        self.bottle_conv = nn.Conv2d(i, o, 1)
        self.double_conv = nn.Sequential(nn.Conv2d(o, o, 3, padding=1), nn.BatchNorm2d(o),
                                         nn.LeakyReLU(0.2), nn.Conv2d(o, o, 3, padding=1))

    def forward(self, x):
        x = self.bottle_conv(x)
        return (self.double_conv(x) + x) / math.sqrt(2)


class Down(nn.Module):
    def __init__(self, i, o):
        super().__init__()
        self.main = nn.Sequential(nn.Conv2d(i, i, 4, 2, 1), nn.LeakyReLU(0.1), Res(i, o))

    def forward(self, x):
        return self.main(x)


class Sdft(nn.Module):
    def __init__(self, d, c, k):
        super().__init__()
        self.k, self.scale = k, 1 / math.sqrt(c * k * k)
        self.modulation = nn.Conv2d(d, c, 1)
        self.weight = nn.Parameter(torch.randn(1, c, c, k, k))

    def forward(self, x, z):
        b, c, h, w = x.shape
        wt = self.scale * self.weight * self.modulation(z).view(b, 1, c, 1, 1)
        wt = wt * torch.rsqrt(wt.pow(2).sum([2, 3, 4]) + 1e-8).view(b, c, 1, 1, 1)
        out = F.conv2d(x.view(1, b * c, h, w), wt.view(b * c, c, self.k, self.k), padding=self.k // 2, groups=b)
        return out.view(b, c, h, w)


class Up(nn.Module):
    def __init__(self, i, o, k):
        super().__init__()
        self.up = nn.ConvTranspose2d(i, i // 2, 2, 2)
        self.conv_cat = nn.Sequential(nn.Conv2d(i // 2 + i // 8, o, 1), nn.LeakyReLU(0.2),
                                      nn.Conv2d(o, o, 3, padding=1), nn.LeakyReLU(0.2))
        self.conv_s = nn.Conv2d(i // 2, o, 1)
        self.SDFT = Sdft(512, o, k)

    def forward(self, x1, x2, z):
        x1 = self.up(x1)
        return self.SDFT(self.conv_cat(torch.cat([x1, x2[:, ::4]], 1)), z) + self.conv_s(x1)


class ReleaseDecoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.inc = nn.Module()
        self.inc.double_conv = nn.Sequential(
            nn.Conv2d(1, 64, 3, padding=1), nn.BatchNorm2d(64), nn.LeakyReLU(0.1),
            nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.LeakyReLU(0.1))
        self.down1, self.down2, self.down3, self.down4 = Down(64, 128), Down(128, 256), Down(256, 512), Down(512, 1024)
        self.up1, self.up2, self.up3, self.up4 = Up(1024, 512, 3), Up(512, 256, 3), Up(256, 128, 5), Up(128, 64, 5)
        self.outc = nn.Sequential(nn.Conv2d(64, 64, 3, 1, 1), nn.LeakyReLU(0.2), nn.Conv2d(64, 3, 3, 1, 1), nn.Tanh())

    def forward(self, inputs):
        x, z = inputs
        x1 = self.inc.double_conv(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x5 = self.down4(x4)
        h = self.up1(x5, x4, z)
        h = self.up2(h, x3, z)
        h = self.up3(h, x2, z)
        return self.outc(self.up4(h, x1, z))


class ReleaseUNet(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        enc = [1, d, 2 * d, 4 * d, 8 * d, 8 * d, 8 * d, 8 * d, 8 * d]
        for i in range(1, 9):
            setattr(self, f"conv{i}", nn.Conv2d(enc[i - 1], enc[i], 4, 2, 1))
            if 1 < i < 8:
                setattr(self, f"conv{i}_bn", nn.BatchNorm2d(enc[i]))
        dec_in = [8 * d, 16 * d, 16 * d, 16 * d, 16 * d, 8 * d, 4 * d, 2 * d]
        dec_out = [8 * d, 8 * d, 8 * d, 8 * d, 4 * d, 2 * d, d, 3]
        for i in range(1, 9):
            setattr(self, f"deconv{i}", nn.ConvTranspose2d(dec_in[i - 1], dec_out[i - 1], 4, 2, 1))
            if i < 8:
                setattr(self, f"deconv{i}_bn", nn.BatchNorm2d(dec_out[i - 1]))

    def forward(self, x, dropout=False):
        e = [self.conv1(x)]
        for i in range(2, 9):
            h = getattr(self, f"conv{i}")(F.leaky_relu(e[-1], 0.2))
            e.append(getattr(self, f"conv{i}_bn")(h) if i < 8 else h)
        d = e[7]
        for i in range(1, 9):
            h = getattr(self, f"deconv{i}")(F.relu(d))
            if i == 8:
                return torch.tanh(h)
            h = getattr(self, f"deconv{i}_bn")(h)
            if i <= 3:
                h = F.dropout(h, 0.5, training=dropout)
            d = torch.cat([h, e[7 - i]], 1)


def randomize_batchnorm(module: nn.Module, generator: torch.Generator) -> None:
    """Give every BatchNorm non-trivial running statistics and affine parameters."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=generator) * 0.1)
            m.running_var.copy_(torch.rand(c, generator=generator) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=generator) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=generator) * 0.1)
            m.num_batches_tracked.fill_(7)


def unused_vgg_tensors() -> dict[str, torch.Tensor]:
    """The release's classifier, stored stride-0 so the test file stays a few hundred MB lighter."""
    shapes = {"0.weight": (4096, 25088), "0.bias": (4096,), "3.weight": (4096, 4096), "3.bias": (4096,),
              "6.weight": (1000, 4096), "6.bias": (1000,)}
    return {f"vgg.vgg_model.classifier.{k}": torch.zeros(1).expand(*s) for k, s in shapes.items()}
