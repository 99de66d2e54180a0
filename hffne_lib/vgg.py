"""VGG19 defined here (torchvision's state-dict keys, so its weight file loads without it).

Weights are resolved in a fixed order and the source is recorded everywhere it matters:
1. an explicit path, or the environment variable HFFNE_VGG19_WEIGHTS;
2. torch hub's cache file ``<torch hub dir>/checkpoints/vgg19-dcbb9e9d.pth``;
3. a download of that file when online (``allow_download=True``);
4. a seeded random initialisation, with a loud warning: results made with it are stand-ins.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
import torch.nn as nn

VGG19_FILE = "vgg19-dcbb9e9d.pth"
VGG19_URL = f"https://download.pytorch.org/models/{VGG19_FILE}"
VGG19_ENV = "HFFNE_VGG19_WEIGHTS"
RANDOM_SOURCE = "random-init (STAND-IN: no ImageNet weights found)"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# torchvision's VGG19 "E" configuration: channel widths, "M" for a 2x2 max-pool.
_CONFIG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
           512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]

#: Index (in ``features``) of the ReLU that ends each named layer.
LAYER_INDEX = {"relu1_2": 3, "relu2_2": 8, "relu3_2": 13, "relu4_2": 22, "relu5_2": 31, "pool5": 36}


class RandomVGGWarning(UserWarning):
    """VGG19 runs with random weights: perceptual terms and the normal encoder are stand-ins."""


def _make_features(last_index: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    in_ch = 3
    for width in _CONFIG:
        if width == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(in_ch, width, 3, padding=1), nn.ReLU(inplace=True)]
            in_ch = width
    return nn.Sequential(*layers[: last_index + 1])


class VGG19Features(nn.Module):
    """Frozen VGG19 convolutional trunk up to ``last_layer`` (the classifier is never built).

    Input: B x 3 x H x W, already in the range the caller wants normalised (the ImageNet
    mean/std normalisation is applied here, as the authors' release does).
    Output of ``forward``: dict layer name -> B x C x H/s x W/s for each requested layer.
    ``exit_early=False`` runs every layer built even when the requested ones come earlier, as the
    authors' release does (benchmarks use it to cost their path honestly).
    """

    def __init__(self, last_layer: str = "relu5_2", exit_early: bool = True):
        super().__init__()
        if last_layer not in LAYER_INDEX:
            raise ValueError(f"unknown VGG19 layer {last_layer!r}; choose one of {list(LAYER_INDEX)}")
        self.last_layer = last_layer
        self.exit_early = exit_early
        self.features = _make_features(LAYER_INDEX[last_layer])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.weight_source = "unset"
        self.reset_parameters()
        self.requires_grad_(False)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """torchvision's VGG initialisation: kaiming normal (fan_out, ReLU) weights, zero biases."""
        for module in self.features:
            if isinstance(module, nn.Conv2d):
                fan_out = module.out_channels * module.kernel_size[0] * module.kernel_size[1]
                with torch.no_grad():
                    module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * (2.0 / fan_out) ** 0.5)
                    module.bias.zero_()

    def forward(self, x: torch.Tensor, layers: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
        """B x 3 x H x W -> {name: its activation} for each of ``layers`` (names of LAYER_INDEX,
        default: ``last_layer`` alone); ValueError for a layer past ``last_layer``."""
        layers = layers or (self.last_layer,)
        wanted = {LAYER_INDEX[name]: name for name in layers}
        if max(wanted) > LAYER_INDEX[self.last_layer]:
            raise ValueError(f"this VGG19 stops at {self.last_layer}; cannot return {layers}")
        out: dict[str, torch.Tensor] = {}
        h = (x - self.mean) / self.std
        for index, layer in enumerate(self.features):
            h = layer(h)
            if index in wanted:
                out[wanted[index]] = h
                if self.exit_early and len(out) == len(wanted):
                    break
        return out

    def load_torchvision_state(self, state: dict[str, torch.Tensor], source: str) -> None:
        """Load torchvision-layout weights (``features.N.*``; ``classifier.*`` is ignored)."""
        own = self.state_dict()
        missing = [k for k in own if k not in state]
        if missing:
            raise ValueError(f"VGG19 weights from {source} lack key {missing[0]!r}")
        for key, value in own.items():
            if tuple(state[key].shape) != tuple(value.shape):
                raise ValueError(f"VGG19 weights from {source}: key {key!r} has shape "
                                 f"{tuple(state[key].shape)}, expected {tuple(value.shape)}")
        self.load_state_dict({k: state[k] for k in own})
        self.weight_source = source


def hub_cache_path() -> Path:
    """Where torch hub keeps torchvision's VGG19 file (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE


def resolve_vgg19_weights(path: str | os.PathLike | None = None,
                          allow_download: bool = False) -> Path | None:
    """The weight file to use, following the documented order; None means random init."""
    explicit = path if path is not None else os.environ.get(VGG19_ENV)
    if explicit:
        explicit = Path(explicit).expanduser()
        if not explicit.is_file():
            raise FileNotFoundError(f"VGG19 weights not found at {explicit} (set by "
                                    f"{'argument' if path is not None else VGG19_ENV}); fix the path "
                                    f"or unset it to fall back to the hub cache")
        return explicit
    cached = hub_cache_path()
    if cached.is_file():
        return cached
    if allow_download:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(VGG19_URL, str(cached), progress=True)
            return cached
        except OSError as err:  # offline: fall through to the random stand-in
            warnings.warn(f"could not download VGG19 weights ({err}); using random weights",
                          RandomVGGWarning, stacklevel=2)
    return None


def load_vgg19(last_layer: str = "relu5_2", path: str | os.PathLike | None = None,
               allow_download: bool = False, seed: int = 0) -> VGG19Features:
    """A frozen VGG19 trunk with the best weights available; ``.weight_source`` says which."""
    vgg = VGG19Features(last_layer)
    weight_file = resolve_vgg19_weights(path, allow_download)
    if weight_file is None:
        vgg.reset_parameters(torch.Generator().manual_seed(seed))
        vgg.weight_source = f"{RANDOM_SOURCE}, seed {seed}"
        warnings.warn(f"VGG19: no ImageNet weights (set {VGG19_ENV} or put {VGG19_FILE} in "
                      f"{hub_cache_path().parent}); using a seeded RANDOM VGG19. Every number "
                      f"made with it is a stand-in.", RandomVGGWarning, stacklevel=2)
    else:
        state = torch.load(weight_file, map_location="cpu", weights_only=True)
        vgg.load_torchvision_state(state, source=str(weight_file))
    return vgg.eval()
