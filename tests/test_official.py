"""The authors' checkpoints: exact key layout, a strict load round trip, and every bad file."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from hffne_lib.coarse import UNetGenerator
from hffne_lib.official import (CheckpointError, official_coarse_shapes, official_refiner_shapes,
                                load_official_refiner)
from hffne_lib.pipeline import NormalEstimator
from hffne_lib.refiner import Refiner

from official_layout import (ReleaseDecoder, ReleaseEncoder, ReleaseUNet, randomize_batchnorm,
                             unused_vgg_tensors)


def test_expected_layout_equals_the_reference_list(shared_dir):
    reference = json.loads((shared_dir / "reference" / "official_checkpoint_keys.json").read_text())
    coarse_ref, encoder_ref, decoder_ref = ({k: tuple(v) for k, v in part.items()} for part in reference.values())
    refiner = official_refiner_shapes(Refiner())
    assert official_coarse_shapes(UNetGenerator()) == coarse_ref
    assert refiner["NormalEncoder"] == encoder_ref
    assert refiner["NormalDecoder"] == decoder_ref


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """Seeded release-layout networks saved as ExemplarModel.pkl and RefinerModel.pt."""
    torch.manual_seed(1234)
    generator = torch.Generator().manual_seed(99)
    unet, encoder, decoder = ReleaseUNet().eval(), ReleaseEncoder().eval(), ReleaseDecoder().eval()
    for net in (unet, decoder):
        randomize_batchnorm(net, generator)
    folder = tmp_path_factory.mktemp("release")
    torch.save(unet.state_dict(), folder / "ExemplarModel.pkl")
    encoder_state = {**encoder.state_dict(), **unused_vgg_tensors()}
    torch.save({"NormalEncoder": encoder_state, "NormalDecoder": decoder.state_dict()}, folder / "RefinerModel.pt")
    return folder, unet, encoder, decoder


def _gray(batch=2, size=256, seed=5):
    return torch.rand(batch, 1, size, size, generator=torch.Generator().manual_seed(seed))


def test_round_trip_matches_the_release_computation(release):
    folder, unet, encoder, decoder = release
    estimator = NormalEstimator.from_official(folder / "ExemplarModel.pkl", folder / "RefinerModel.pt")
    gray = _gray()
    with torch.no_grad():
        their_coarse = F.normalize(unet(gray))
        their_fine = F.normalize(decoder((gray, encoder(their_coarse))))
    ours_coarse = estimator.coarse(gray)
    assert torch.allclose(ours_coarse, their_coarse, atol=1e-6)
    assert torch.allclose(estimator.refine(gray, their_coarse), their_fine, atol=1e-5)
    assert torch.allclose(estimator(gray), their_fine, atol=1e-5)
    assert not estimator.training and estimator.provenance["weights"] == "official"


def test_test_time_dropout_reproduces_the_release(release):
    folder, unet, _, _ = release
    estimator = NormalEstimator.from_official(folder / "ExemplarModel.pkl", folder / "RefinerModel.pt",
                                              test_time_dropout=True)
    gray = _gray(1)
    torch.manual_seed(7)
    ours = estimator.coarse(gray)
    torch.manual_seed(7)
    with torch.no_grad():
        theirs = F.normalize(unet(gray, dropout=True))
    assert torch.allclose(ours, theirs, atol=1e-6)
    # dropout on means two calls differ; off (the default) means they agree
    assert not torch.allclose(estimator.coarse(gray), estimator.coarse(gray))


def test_batched_modulation_equals_the_grouped_release_form(release):
    folder, _, encoder, decoder = release
    grouped = load_official_refiner(folder / "RefinerModel.pt", modulation="grouped")
    batched = load_official_refiner(folder / "RefinerModel.pt", modulation="batched")
    gray, exemplar = _gray(3), F.normalize(torch.randn(3, 3, 256, 256), dim=1)
    with torch.no_grad():
        assert torch.allclose(grouped(gray, exemplar), batched(gray, exemplar), atol=1e-5)


@pytest.mark.parametrize("kind", ["missing", "empty", "truncated", "garbage", "wrong_kind", "renamed_key",
                                  "dropped_key", "wrong_shape", "extra_key"])
def test_bad_refiner_checkpoints_give_one_line_errors(release, tmp_path, kind):
    folder = release[0]
    good = (folder / "RefinerModel.pt").read_bytes()
    bad = tmp_path / "RefinerModel.pt"
    expect = {"missing": "no such checkpoint", "empty": "empty", "truncated": "not a readable checkpoint",
              "garbage": "not a readable checkpoint", "wrong_kind": "expected a dict with 'NormalEncoder'",
              "renamed_key": "unexpected key 'up2.SDFT.kernel'",
              "dropped_key": "missing key 'up2.SDFT.weight'", "wrong_shape": "key 'outc.2.weight'",
              "extra_key": "unexpected key 'extra.weight'"}[kind]
    if kind == "empty":
        bad.write_bytes(b"")
    elif kind == "truncated":
        bad.write_bytes(good[: len(good) // 3])
    elif kind == "garbage":
        bad.write_bytes(b"this is not a checkpoint\n" * 100)
    elif kind == "wrong_kind":
        bad.write_bytes((folder / "ExemplarModel.pkl").read_bytes())
    elif kind != "missing":
        state = torch.load(folder / "RefinerModel.pt", weights_only=True)
        dec = state["NormalDecoder"]
        if kind == "renamed_key":
            dec["up2.SDFT.kernel"] = dec.pop("up2.SDFT.weight")
        elif kind == "dropped_key":
            del dec["up2.SDFT.weight"]
        elif kind == "wrong_shape":
            dec["outc.2.weight"] = torch.zeros(4, 64, 3, 3)
        else:
            dec["extra.weight"] = torch.zeros(1)
        torch.save(state, bad)
    with pytest.raises(CheckpointError) as info:
        NormalEstimator.from_official(folder / "ExemplarModel.pkl", bad)
    message = str(info.value)
    assert expect in message and str(bad) in message and "\n" not in message


def test_bad_coarse_checkpoint_names_the_first_offending_key(release, tmp_path):
    folder = release[0]
    state = torch.load(folder / "ExemplarModel.pkl", weights_only=True)
    del state["conv3_bn.running_var"]
    torch.save(state, tmp_path / "ExemplarModel.pkl")
    with pytest.raises(CheckpointError, match=r"ExemplarModel.pkl: missing key 'conv3_bn.running_var'"):
        NormalEstimator.from_official(tmp_path / "ExemplarModel.pkl", folder / "RefinerModel.pt")
    with pytest.raises(CheckpointError, match="unexpected key 'NormalEncoder'"):
        NormalEstimator.from_official(folder / "RefinerModel.pt", folder / "RefinerModel.pt")


def test_estimator_rejects_colour_input(release):
    folder = release[0]
    estimator = NormalEstimator.from_official(folder / "ExemplarModel.pkl", folder / "RefinerModel.pt")
    with pytest.raises(ValueError, match="B x 1 x H x W"):
        estimator(torch.rand(1, 3, 256, 256))
