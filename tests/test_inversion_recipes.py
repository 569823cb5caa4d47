"""The larger networks to invert (natural-image autoencoders, ResNet features) and the "active" coupling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from liftinv.inversion import invert
from liftinv.inversion._common import _active_mask
from liftinv.inversion.networks import (
    NATURAL_SPLITS,
    ConvAutoencoder,
    natural_autoencoder,
    natural_patches,
    resnet,
    resnet_features,
)
from liftinv.inversion.recipes import get_recipe
from liftinv.lifted import LiftingError, lift
from liftinv.lifted.activations import ReLU
from liftinv.models import ConvResidualBlock

TINY_AE = dict(image_size=16, channels=(4,), features=2, n_train=64, epochs=1)
TINY_RESNET = dict(channels=4, epochs=1, n_train=256)


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_conv_residual_block_lifts_with_zero_penalties_and_the_nested_output():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), ConvResidualBlock(3, 5), nn.AvgPool2d(2)).double()
    lifted = lift(net, last="free")
    # the convolution before the block gets its own state, which the skip reads
    assert [layer.inputs for layer in lifted.layers] == [(0,), (1,), (1, 2), (3,)]
    x = torch.rand(4, 1, 8, 8, dtype=torch.float64)
    states = lifted.init_states(x)
    assert torch.allclose(states[-1], net(x), atol=1e-12)
    for l in range(1, lifted.depth + 1):
        z = lifted.preactivation(l, states)
        pen = lifted.penalties[l - 1].value(states[l], z)
        assert float(pen.detach().abs().max()) < 1e-10


def test_conv_residual_block_with_batchnorm_asks_for_folding():
    block = ConvResidualBlock(2, batchnorm=True).eval()
    with pytest.raises(LiftingError, match="BatchNorm2d.*fold"):
        lift(block, last="free")
    with pytest.raises(LiftingError, match="fold_batchnorm"):
        invert(block, torch.rand(1, 2, 4, 4), input_shape=(2, 4, 4), progress=False, max_iter=1)


def test_natural_autoencoder_is_deterministic_offline_and_cached(tmp_path):
    a = natural_autoencoder(**TINY_AE, seed=3)
    b = natural_autoencoder(**TINY_AE, seed=3)
    assert _same_weights(a, b)
    assert not _same_weights(a, natural_autoencoder(**TINY_AE, seed=4))
    assert "bundled images" in a.train_info["source"]
    cached = natural_autoencoder(**TINY_AE, seed=3, path=tmp_path)
    (file,) = tmp_path.glob("natural-autoencoder-*.pt")
    stamp = file.stat().st_mtime_ns
    again = natural_autoencoder(**TINY_AE, seed=3, path=tmp_path)
    assert file.stat().st_mtime_ns == stamp and _same_weights(cached, again) and _same_weights(a, again)
    other = tmp_path / "other.pt"
    torch.save({"config": {"recipe": "something else"}, "state_dict": {}}, other)
    with pytest.raises(ValueError, match="not a natural-autoencoder cache"):
        natural_autoencoder(**TINY_AE, path=other)
    assert torch.load(other, weights_only=True)["config"] == {"recipe": "something else"}


def test_resnet_recipe_is_deterministic_and_its_folded_features_lift():
    a = resnet(**TINY_RESNET, seed=1)
    b = resnet(**TINY_RESNET, seed=1)
    assert _same_weights(a, b)
    feats = resnet_features(a, "pool2")
    x = torch.rand(3, 1, 16, 16)
    with torch.no_grad():
        reference = a[:5](x)  # stem .. pool2 with unfolded batch norms, eval mode
    assert torch.allclose(feats(x), reference, atol=1e-5)
    lifted = lift(feats, last="free")
    assert lifted.depth == 7  # stem, 2 x (inner, output) of the blocks, the pooled states
    assert torch.allclose(lifted.init_states(x)[-1], reference, atol=1e-5)
    with pytest.raises(ValueError, match="stage must be one of"):
        resnet_features(a, "stage9")


def test_natural_patches_splits_are_disjoint_and_fixed(tmp_path):
    assert not set(NATURAL_SPLITS["train"]) & set(NATURAL_SPLITS["test"])
    assert not set(NATURAL_SPLITS["validation"]) & set(NATURAL_SPLITS["test"])
    val, _ = natural_patches("validation", 16, 4)
    test, _ = natural_patches("test", 16, 4)
    assert torch.equal(test, natural_patches("test", 16, 4, seed=9)[0])  # evaluation patches ignore the seed
    assert not torch.equal(val, test)
    from PIL import Image

    rng = np.random.default_rng(0)
    for k in range(45):
        Image.fromarray(rng.integers(0, 255, (20, 20), dtype=np.uint8)).save(tmp_path / f"img{k:02d}.png")
    _, src = natural_patches("train", 16, 8, tmp_path)
    assert "train: 5 images" in src
    _, src = natural_patches("test", 16, 8, tmp_path)
    assert "test: 20 images" in src
    with pytest.raises(ValueError, match="more than 40"):
        natural_patches("test", 16, 2, _small_folder(tmp_path))


def _small_folder(tmp_path):
    d = tmp_path / "small"
    d.mkdir()
    from PIL import Image

    for k in range(3):
        Image.fromarray(np.zeros((20, 20), dtype=np.uint8)).save(d / f"{k}.png")
    return d


@pytest.mark.parametrize("name", ["natural-encoder", "autoencoder128", "resnet-features"])
def test_new_recipes_build_with_their_splits(name):
    kw = dict(n_train=64, epochs=1) if name != "resnet-features" else dict(epochs=1, n_train=256)
    test = get_recipe(name, n_images=2, **kw)
    val = get_recipe(name, n_images=2, split="validation", **kw)
    assert test.inputs.shape == val.inputs.shape and not torch.equal(test.inputs, val.inputs)
    assert float(test.inputs.min()) >= 0 and float(test.inputs.max()) <= 1
    out = test.model(test.inputs)
    assert out.shape[0] == 2 and torch.isfinite(out).all()
    lift(test.model, last="free")  # every layer liftable


def test_active_mask_estimates_the_noise_and_protects_inactive_units():
    g = torch.Generator().manual_seed(0)
    clean = torch.relu(torch.randn(3, 4000, generator=g))
    sigma = torch.tensor([0.01, 0.05, 0.1]).reshape(3, 1)
    f = clean + sigma * torch.randn(3, 4000, generator=g)
    mask, s = _active_mask(ReLU(), f)
    assert torch.allclose(s, sigma.flatten(), rtol=0.15)
    inactive = clean == 0
    assert float(mask[inactive].float().mean()) < 0.01  # noise on dead units is not coupled hard
    exact_mask, s0 = _active_mask(ReLU(), clean)
    assert float(s0.abs().max()) == 0 and torch.equal(exact_mask, clean > 0)


def test_active_coupling_fits_exact_data_of_an_injective_network():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 48), nn.ReLU()).double()  # 16 -> 48: injective here
    u = torch.rand(3, 1, 4, 4, dtype=torch.float64)
    f = net(u).detach()
    res = invert(
        net, f, regulariser=None, coupling="active", max_iter=4000, input_shape=(1, 4, 4), progress=False
    )
    assert float(res.residual.max()) < 1e-4
    assert res.info["hard_fraction"] == pytest.approx(float((f > 0).double().mean()))


def test_conv_autoencoder_rejects_a_size_it_cannot_halve():
    with pytest.raises(ValueError, match="divisible by 2\\^len\\(channels\\) = 8"):
        ConvAutoencoder(20, channels=(4, 4, 4))


def _deep_net():
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Flatten()]
    dims = [64, 96, 96, 96, 96]
    for a, b in zip(dims[:-1], dims[1:]):
        lin = nn.Linear(a, b)
        nn.init.orthogonal_(lin.weight, gain=1.4)
        nn.init.constant_(lin.bias, 0.05)
        layers += [lin, nn.ReLU()]
    return nn.Sequential(*layers).double()


def test_inertia_speeds_up_the_inversion_of_a_deep_network():
    """Four ReLU layers: at the same budget the inertial BCD fits exact data better than plain BCD."""
    net = _deep_net()
    u = torch.rand(4, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    f = net(u).detach()
    kw = dict(regulariser=None, max_iter=300, tol=0, progress=False, coupling="active", input_shape=(1, 8, 8))
    plain = invert(net, f, inertia=0.0, **kw)
    inertial = invert(net, f, inertia=0.9, **kw)
    assert inertial.info["inertia"] == 0.9
    assert float(inertial.residual.mean()) < 0.8 * float(plain.residual.mean())


@pytest.mark.parametrize("bad", [-0.1, 1.0, "fast"])
def test_inertia_outside_0_1_is_one_clear_error(bad):
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU())
    with pytest.raises(ValueError, match="inertia must be"):
        invert(net, torch.rand(1, 3), inertia=bad, input_shape=(1, 2, 2), progress=False)


def test_restart_drops_the_momentum_of_the_samples_whose_step_turns_back():
    from liftinv.inversion._lifted import _restarted

    prev = torch.zeros(2, 3)
    cur = torch.ones(2, 3)  # momentum +1 in every entry
    new = torch.stack([torch.full((3,), 2.5), torch.full((3,), 1.2)])  # beyond / short of y = 1.9
    out = _restarted(prev, cur, new, 0.9)
    assert torch.equal(out[0], cur[0])  # kept: the step from y goes on in the momentum's direction
    assert torch.equal(out[1], new[1])  # restarted: next momentum new - new = 0
    assert _restarted(None, cur, new, 0.9) is cur
