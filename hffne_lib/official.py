"""The authors' released checkpoints: ExemplarModel.pkl and RefinerModel.pt.

ExemplarModel.pkl is the coarse U-Net's state dict; its keys are already ours
(hffne_lib.coarse.UNetGenerator at depth 8, width 64). RefinerModel.pt is a dict with
"NormalEncoder" and "NormalDecoder" state dicts named differently from ours: PREFIXES maps them.

The release's encoder stores its VGG19 twice: vgg.vgg_model.features.* and the alias
vgg.vgg_feature.* (one module under two names). Loading their state dict assigns the alias
last, so vgg.vgg_feature.* is what their model runs with, and what we load. The other copy,
the classifier and conv5_3/5_4 are shape-checked and dropped (the network reads relu5_2 only).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from .coarse import UNetGenerator
from .refiner import Refiner

ENCODER_KEY, DECODER_KEY = "NormalEncoder", "NormalDecoder"


def _prefix_pairs() -> list[tuple[str, str]]:
    """(official prefix, our prefix) for every renamed module of RefinerModel.pt."""
    pairs = [("feature2vector.", "normal_encoder.code_head."),
             ("vgg.vgg_feature.", "normal_encoder.vgg.features."),
             ("inc.double_conv.", "face_encoder.stem."),
             ("outc.", "decoder.head.")]
    for k in range(1, 5):
        pairs += [(f"down{k}.main.0.", f"face_encoder.downs.{k - 1}.0."),
                  (f"down{k}.main.2.bottle_conv.", f"face_encoder.downs.{k - 1}.2.project."),
                  (f"down{k}.main.2.double_conv.", f"face_encoder.downs.{k - 1}.2.body."),
                  (f"up{k}.up.", f"decoder.ups.{k - 1}.upsample."),
                  (f"up{k}.conv_cat.", f"decoder.ups.{k - 1}.fuse."),
                  (f"up{k}.conv_s.", f"decoder.ups.{k - 1}.shortcut."),
                  (f"up{k}.SDFT.modulation.", f"decoder.ups.{k - 1}.mix.style."),
                  (f"up{k}.SDFT.", f"decoder.ups.{k - 1}.mix.")]
    return pairs


PREFIXES = _prefix_pairs()

# Official VGG19 tensors our relu5_2 trunk does not use: (key suffix, shape).
_VGG_UNUSED = {
    **{f"vgg.vgg_model.classifier.{k}": s for k, s in
       {"0.weight": (4096, 25088), "0.bias": (4096,), "3.weight": (4096, 4096), "3.bias": (4096,),
        "6.weight": (1000, 4096), "6.bias": (1000,)}.items()},
    **{f"{p}{i}.{t}": ((512, 512, 3, 3) if t == "weight" else (512,))
       for p in ("vgg.vgg_model.features.", "vgg.vgg_feature.") for i in (32, 34) for t in ("weight", "bias")},
}


class CheckpointError(ValueError):
    """A checkpoint file that is missing, unreadable or of the wrong layout."""


def rename(key: str, to_ours: bool = True) -> str:
    """Official RefinerModel.pt key -> our Refiner key (or back with ``to_ours=False``)."""
    src, dst = (0, 1) if to_ours else (1, 0)
    matches = [pair for pair in PREFIXES if key.startswith(pair[src])]
    if not matches:
        raise KeyError(key)
    pair = max(matches, key=lambda p: len(p[src]))
    return pair[dst] + key[len(pair[src]):]


def official_refiner_shapes(refiner: Refiner) -> dict[str, dict[str, tuple[int, ...]]]:
    """Every key and shape of the release's RefinerModel.pt, derived from an A3 Refiner."""
    encoder: dict[str, tuple[int, ...]] = {}
    decoder: dict[str, tuple[int, ...]] = {}
    for key, value in refiner.state_dict().items():
        official = rename(key, to_ours=False)
        if key.startswith("normal_encoder.vgg."):
            encoder[official.replace("vgg.vgg_feature.", "vgg.vgg_model.features.")] = tuple(value.shape)
        (encoder if key.startswith("normal_encoder.") else decoder)[official] = tuple(value.shape)
    encoder.update(_VGG_UNUSED)
    return {ENCODER_KEY: encoder, DECODER_KEY: decoder}


def official_coarse_shapes(generator: UNetGenerator) -> dict[str, tuple[int, ...]]:
    """Every key and shape of the release's ExemplarModel.pkl (our keys, unchanged)."""
    return {key: tuple(value.shape) for key, value in generator.state_dict().items()}


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu", mmap: bool = False) -> object:
    """torch.load a checkpoint safely (tensors and plain containers only), one-line CheckpointErrors.
    ``mmap``: tensors memory-mapped, not read (``map_location`` is then the CPU)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: checkpoint file is empty")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu" if mmap else map_location, weights_only=True, mmap=mmap)
    except Exception as err:  # corrupt files raise many different types
        detail = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}: {detail})") from None


def check_state(path: Path, state: object, expected: dict[str, tuple[int, ...]], what: str) -> None:
    """Raise a one-line CheckpointError naming the file and the first offending key."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: {what} is a {type(state).__name__}, expected a state dict")
    for key in state:
        if key not in expected:
            raise CheckpointError(f"{path}: unexpected key {key!r} in {what}")
    for key, shape in expected.items():
        if key not in state:
            raise CheckpointError(f"{path}: missing key {key!r} in {what}")
        value = state[key]
        got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        if got != tuple(shape):
            raise CheckpointError(f"{path}: key {key!r} in {what} has shape {got}, expected {tuple(shape)}")


def load_official_coarse(path: str | os.PathLike, test_time_dropout: bool = False) -> UNetGenerator:
    """The release's coarse U-Net from ExemplarModel.pkl, strictly checked, in eval mode."""
    path = Path(path)
    generator = UNetGenerator(in_channels=1, base_width=64, depth=8, test_time_dropout=test_time_dropout)
    state = read_checkpoint(path)
    check_state(path, state, official_coarse_shapes(generator), "the coarse U-Net state dict")
    generator.load_state_dict(state)
    return generator.eval()


def load_official_refiner(path: str | os.PathLike, modulation: str = "grouped") -> Refiner:
    """The release's refiner (A3) from RefinerModel.pt, strictly checked, in eval mode.

    ``modulation="grouped"`` runs the authors' per-sample grouped convolution; "batched" is the
    same maths as one ordinary convolution (faster, equal to rounding).
    """
    from .refiner import RefinerConfig

    path = Path(path)
    refiner = Refiner(RefinerConfig(architecture="A3", modulation=modulation))
    checkpoint = read_checkpoint(path)
    if not isinstance(checkpoint, dict) or ENCODER_KEY not in checkpoint or DECODER_KEY not in checkpoint:
        found = sorted(checkpoint)[:5] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointError(f"{path}: expected a dict with {ENCODER_KEY!r} and {DECODER_KEY!r} "
                              f"(the release's RefinerModel.pt), found {found}")
    expected = official_refiner_shapes(refiner)
    ours = {}
    for part in (ENCODER_KEY, DECODER_KEY):
        check_state(path, checkpoint[part], expected[part], f"[{part!r}]")
        ours.update({rename(k): v for k, v in checkpoint[part].items() if k not in _VGG_UNUSED
                     and not k.startswith("vgg.vgg_model.features.")})
    refiner.load_state_dict(ours)
    refiner.vgg.weight_source = f"{path} (the release's encoder VGG19)"
    return refiner.eval()
