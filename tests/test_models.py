"""Network shapes for every variant, and the modulated convolution's maths."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hffne_lib.coarse import CoarseConfig, PatchDiscriminator, UNetGenerator
from hffne_lib.refiner import ARCHITECTURES, ModulatedConv2d, Refiner, RefinerConfig


def _unit(shape, seed=0):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=1)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_every_variant_at_ci_resolution(architecture):
    torch.manual_seed(0)
    refiner = Refiner(RefinerConfig(architecture=architecture, base_width=8, code_dim=64))
    out = refiner(torch.rand(2, 1, 64, 64), _unit((2, 3, 64, 64)))
    assert out.shape == (2, 3, 64, 64)
    assert torch.allclose(out.norm(dim=1), torch.ones(2, 64, 64), atol=1e-5)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_every_variant_at_paper_resolution(architecture):
    torch.manual_seed(0)
    refiner = Refiner(RefinerConfig(architecture=architecture)).eval()
    with torch.no_grad():
        out = refiner(torch.rand(1, 1, 256, 256), _unit((1, 3, 256, 256)))
    assert out.shape == (1, 3, 256, 256)


def test_the_exemplar_changes_the_output_only_where_it_is_used():
    torch.manual_seed(0)
    gray = torch.rand(1, 1, 64, 64)
    for architecture in ARCHITECTURES:
        refiner = Refiner(RefinerConfig(architecture=architecture, base_width=8, code_dim=64)).eval()
        with torch.no_grad():
            a, b = refiner(gray, _unit((1, 3, 64, 64), 1)), refiner(gray, _unit((1, 3, 64, 64), 2))
        assert not torch.allclose(a, b), architecture


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_a_residual_refiner_starts_at_its_exemplar_and_learns_away_from_it(architecture):
    torch.manual_seed(0)
    gray, exemplar, target = torch.rand(2, 1, 64, 64), _unit((2, 3, 64, 64), 1), _unit((2, 3, 64, 64), 2)
    refiner = Refiner(RefinerConfig(architecture=architecture, base_width=8, code_dim=64, residual=True))
    assert torch.allclose(refiner(gray, exemplar), exemplar, atol=1e-6)
    plain = Refiner(RefinerConfig(architecture=architecture, base_width=8, code_dim=64))
    assert (plain(gray, exemplar) - exemplar).abs().max() > 0.1
    optimizer = torch.optim.Adam(refiner.parameters(), 1e-2)
    for _ in range(2):  # the zero last layer moves first, then the layers before it get gradients
        optimizer.zero_grad()
        (refiner(gray, exemplar) - target).abs().mean().backward()
        optimizer.step()
    out = refiner(gray, exemplar)
    assert (out - exemplar).abs().max() > 1e-3
    assert torch.allclose(out.norm(dim=1), torch.ones(2, 64, 64), atol=1e-5)


def test_a_high_passed_residual_drops_a_uniform_correction_and_still_learns_detail():
    """residual_highpass removes the correction's low frequencies: a correction that is the same at
    every pixel (pure low frequency) leaves the exemplar exactly as it was; without it, it tilts it."""
    torch.manual_seed(0)
    gray, exemplar, target = torch.rand(2, 1, 64, 64), _unit((2, 3, 64, 64), 1), _unit((2, 3, 64, 64), 2)
    refiners = {highpass: Refiner(RefinerConfig(base_width=8, code_dim=64, residual=True, residual_highpass=highpass))
                for highpass in (0.0, 2.0)}
    with torch.no_grad():
        for tilted in refiners.values():
            tilted.decoder.head[2].bias.copy_(torch.tensor([0.5, -0.3, 0.2]))
        assert torch.allclose(refiners[2.0](gray, exemplar), exemplar, atol=1e-5)
        assert (refiners[0.0](gray, exemplar) - exemplar).abs().max() > 0.1
    refiner = refiners[2.0]
    optimizer = torch.optim.Adam(refiner.parameters(), 1e-2)
    for _ in range(2):
        optimizer.zero_grad()
        (refiner(gray, exemplar) - target).abs().mean().backward()
        optimizer.step()
    assert (refiner(gray, exemplar) - exemplar).abs().max() > 1e-3


def test_a_high_passed_residual_needs_a_residual_refiner():
    with pytest.raises(ValueError, match="residual_highpass .* needs residual=True"):
        RefinerConfig(residual_highpass=2.0)
    with pytest.raises(ValueError, match="residual_highpass is a Gaussian sigma in px >= 0"):
        RefinerConfig(residual=True, residual_highpass=-1.0)


@pytest.mark.parametrize("size, depth, width", [(64, 6, 16), (256, 8, 64)])
def test_coarse_generator_and_discriminator_shapes(size, depth, width):
    config = CoarseConfig(base_width=width, depth=depth, disc_width=width)
    gray = torch.rand(2, 1, size, size)
    normals = config.build_generator()(gray)
    assert normals.shape == (2, 3, size, size)
    assert torch.allclose(normals.norm(dim=1), torch.ones(2, size, size), atol=1e-5)
    logits = config.build_discriminator()(gray, normals)
    assert logits.shape == (2, 1, size // 8 - 2, size // 8 - 2)


def test_generator_rejects_sizes_it_cannot_halve():
    with pytest.raises(ValueError, match="divisible by 2\\*\\*depth=256"):
        UNetGenerator(depth=8)(torch.rand(1, 1, 64, 64))


def test_paper_receptive_field_patchgan():
    assert PatchDiscriminator()(torch.rand(1, 1, 256, 256), torch.rand(1, 3, 256, 256)).shape == (1, 1, 30, 30)


def _naive_modulated_conv(layer: ModulatedConv2d, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    """Eqs. 4-7 written out one sample, one output filter at a time."""
    outputs = []
    for b in range(x.shape[0]):
        s = layer.style(code[b:b + 1]).flatten()
        c_in, k = x.shape[1], layer.kernel_size
        filters = []
        for o in range(layer.weight.shape[1]):
            w = layer.weight[0, o] * s.view(-1, 1, 1) / math.sqrt(c_in * k * k)
            filters.append(w / torch.sqrt((w ** 2).sum() + 1e-8))
        outputs.append(F.conv2d(x[b:b + 1], torch.stack(filters), padding=k // 2))
    return torch.cat(outputs)


@pytest.mark.parametrize("implementation", ["grouped", "batched"])
@pytest.mark.parametrize("kernel_size", [3, 5])
def test_modulated_conv_equals_naive_per_sample_reference(implementation, kernel_size):
    torch.manual_seed(3)
    layer = ModulatedConv2d(code_dim=16, channels=6, kernel_size=kernel_size, implementation=implementation)
    x, code = torch.randn(3, 6, 9, 9), torch.randn(3, 16, 1, 1)
    with torch.no_grad():
        assert torch.allclose(layer(x, code), _naive_modulated_conv(layer, x, code), atol=1e-5)


def test_demodulated_filters_have_unit_norm():
    torch.manual_seed(4)
    layer = ModulatedConv2d(code_dim=8, channels=5, kernel_size=3)
    code = torch.randn(4, 8, 1, 1)
    with torch.no_grad():
        style = layer.style(code).view(4, 5)
        weight = layer.scale * layer.weight * style.view(4, 1, 5, 1, 1)
        demodulated = weight * layer.demodulation(style).view(4, 5, 1, 1, 1)
        norms = demodulated.pow(2).sum(dim=(2, 3, 4)).sqrt()
    assert torch.allclose(norms, torch.ones(4, 5), atol=1e-5)
    # the weight is initialised from a standard normal
    assert abs(layer.weight.std().item() - 1.0) < 0.15 and abs(layer.weight.mean().item()) < 0.15


def test_unknown_architecture_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown refiner architecture 'A4'"):
        RefinerConfig(architecture="A4")
