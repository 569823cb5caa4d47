"""The method registry: one name per algorithm, whatever the entry point and the network."""

from __future__ import annotations

import pytest
from liftinv.operators import make_operator

from liftinv.models import build_model, mlp
from liftinv.training import available_methods, get_trainer
from liftinv.training.registry import DESCRIPTIONS, METHOD_MODULES, describe_methods, register_method


def test_every_method_resolves_and_is_described():
    assert set(available_methods()) == set(METHOD_MODULES) == set(DESCRIPTIONS)
    for name in available_methods():
        assert get_trainer(name) is not None
        for module in METHOD_MODULES[name]:
            assert module.startswith("liftinv.training."), module
    assert all(f"{name}:" in describe_methods() for name in available_methods())


@pytest.mark.parametrize("name", ["bregman-isgm", "bregman-bcd", "mac-isgm", "mac-bcd"])
def test_same_name_picks_the_implementation_for_the_network(name):
    from liftinv.training.unrolled import UnrolledLiftedTrainer

    unrolled = build_model("proxgrad", make_operator("denoising", 8), iterations=2)
    general = get_trainer(name, mlp((4, 8, 2)))
    special = get_trainer(name, unrolled)
    assert issubclass(special, UnrolledLiftedTrainer)
    assert not issubclass(general, UnrolledLiftedTrainer)
    # the specialised trainer runs the same algorithm: same penalty family and scheme as the name says
    penalty = "quadratic" if name.startswith("mac") else "bregman"
    scheme = name.split("-")[1]
    trainer = special(unrolled, *_tiny_data(), batch_size=4)
    assert (trainer.penalty, trainer.scheme) == (penalty, scheme)


def _tiny_data():
    import torch

    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 1, 8, 8, generator=g)
    return x + 0.1 * torch.randn(8, 1, 8, 8, generator=g), x


def test_unknown_method_lists_the_names():
    with pytest.raises(ValueError, match="available: backprop-adam"):
        get_trainer("unrolled-bregman-isgm")


def test_registering_an_unlisted_name_is_refused():
    with pytest.raises(ValueError, match="METHOD_MODULES"):
        register_method("my-method", object)
