"""VGG19 weight resolution order and torchvision key compatibility."""
from __future__ import annotations

import pytest
import torch

from hffne_lib import vgg as vgg_module
from hffne_lib.vgg import RandomVGGWarning, VGG19Features, load_vgg19, resolve_vgg19_weights


def _torchvision_style_file(path, value: float):
    """A torchvision-layout VGG19 state dict (features.* of the full trunk, plus a classifier)."""
    state = {k: torch.full_like(v, value) for k, v in VGG19Features("relu5_2").state_dict().items()}
    state.update({"features.34.weight": torch.zeros(512, 512, 3, 3), "classifier.6.bias": torch.zeros(1000)})
    torch.save(state, path)
    return path


@pytest.fixture
def isolated_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv(vgg_module.VGG19_ENV, raising=False)
    return tmp_path


def test_explicit_path_beats_environment_and_cache(isolated_hub, monkeypatch):
    cache = vgg_module.hub_cache_path()
    cache.parent.mkdir(parents=True)
    _torchvision_style_file(cache, 3.0)
    env_file = _torchvision_style_file(isolated_hub / "env.pth", 2.0)
    explicit = _torchvision_style_file(isolated_hub / "explicit.pth", 1.0)
    monkeypatch.setenv(vgg_module.VGG19_ENV, str(env_file))
    assert resolve_vgg19_weights(explicit) == explicit
    net = load_vgg19(path=explicit)
    assert net.features[0].weight.flatten()[0].item() == 1.0 and net.weight_source == str(explicit)
    assert resolve_vgg19_weights() == env_file
    monkeypatch.delenv(vgg_module.VGG19_ENV)
    assert resolve_vgg19_weights() == cache
    assert load_vgg19().features[30].bias[0].item() == 3.0


def test_random_stand_in_is_seeded_and_flagged(isolated_hub):
    with pytest.warns(RandomVGGWarning, match="RANDOM"):
        a = load_vgg19(seed=1)
    with pytest.warns(RandomVGGWarning):
        b = load_vgg19(seed=1)
    assert "STAND-IN" in a.weight_source
    assert torch.equal(a.features[0].weight, b.features[0].weight)
    assert a.features[0].weight.std() > 0


def test_download_failure_falls_back_to_random(isolated_hub, monkeypatch):
    def offline(url, dst, progress=True):
        raise OSError("network unreachable")
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.warns(RandomVGGWarning, match="could not download"):
        assert resolve_vgg19_weights(allow_download=True) is None


def test_missing_explicit_file_is_an_error(isolated_hub):
    with pytest.raises(FileNotFoundError, match="VGG19 weights not found"):
        resolve_vgg19_weights(isolated_hub / "nope.pth")


def test_wrong_weight_file_names_the_key(isolated_hub):
    path = isolated_hub / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, path)
    with pytest.raises(ValueError, match="lack key 'features.0.bias'"):
        load_vgg19(path=path)


def test_layers_match_torchvision_indices():
    net = VGG19Features("relu5_2")
    assert len(net.features) == 32  # up to and including relu5_2
    out = net(torch.rand(1, 3, 64, 64), ("relu1_2", "relu5_2"))
    assert out["relu1_2"].shape == (1, 64, 64, 64) and out["relu5_2"].shape == (1, 512, 4, 4)
    with pytest.raises(ValueError, match="stops at relu1_2"):
        VGG19Features("relu1_2")(torch.rand(1, 3, 16, 16), ("relu5_2",))


def test_training_downloads_the_weights_only_when_its_config_asks(isolated_hub, monkeypatch):
    """``vgg_download=True`` fetches torchvision's file into the hub cache, where later runs find it."""
    from hffne_lib.config import get_config
    from hffne_lib.train import refinement_objective

    fetched = []

    def fake_download(url, dst, progress=True):
        fetched.append(url)
        _torchvision_style_file(dst, 0.5)
    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    with pytest.warns(RandomVGGWarning):
        assert "STAND-IN" in refinement_objective(get_config("ci")).perceptual.vgg.weight_source
    assert fetched == []
    objective = refinement_objective(get_config("ci", vgg_download=True))
    assert fetched == [vgg_module.VGG19_URL] and objective.perceptual.vgg.weight_source == str(vgg_module.hub_cache_path())
    assert objective.perceptual.vgg.features[0].weight.flatten()[0].item() == 0.5
