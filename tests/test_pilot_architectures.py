"""Pilot-only proximal steps of ``benchmarks/pilot_architectures.py`` (issue 12): the memory CNN with its memory
switched off is the library's PG-CNN, the U-Net is fully convolutional at multiples of 4, neither claims a lifted
form, and ``pg_size_pilots.py`` refuses them for lifted trainers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from liftinv.operators import make_operator

from liftinv.models import UnrolledProxGradCNN

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def pilots(load_script):
    sys.path.insert(0, str(BENCH))  # pg_size_pilots imports learned / pilot_architectures by name
    try:
        yield load_script("liftinv_bench_pilot_architectures", BENCH / "pilot_architectures.py")
    finally:
        sys.path.remove(str(BENCH))


def test_memory_cnn_without_memory_is_the_library_proxgrad_cnn(pilots):
    op = make_operator("blur", 24, sigma=1.5)
    mem = pilots.ProxGradMemory(op, memory=3, depth=3, width=8, iterations=2, init="smooth", seed=1)
    ref = UnrolledProxGradCNN(op, depth=3, width=8, iterations=2, init="smooth", seed=1)
    with torch.no_grad():
        for k in range(2):
            m, r = mem.cnns[k], ref.cnns[k]
            m[-1].weight[1:] = 0  # the memory is never written, so it stays 0
            m[-1].bias[1:] = 0
            r[0].weight.copy_(m[0].weight[:, :1])
            r[0].bias.copy_(m[0].bias)
            for j in range(1, len(r) - 1):
                r[j].load_state_dict(m[j].state_dict())
            r[-1].weight.copy_(m[-1].weight[:1])
            r[-1].bias.copy_(m[-1].bias[:1])
            ref.steps[k].copy_(mem.steps[k])
    y = torch.rand(2, 1, 24, 24)
    torch.testing.assert_close(mem(y), ref(y))
    # with memory written, the output changes: the channels are used
    with torch.no_grad():
        mem.cnns[0][-1].weight[1:].normal_()
    assert not torch.allclose(mem(y), ref(y))


def test_unet_step_is_fully_convolutional_and_backprop_only(pilots):
    op = make_operator("blur", 32, sigma=2.0, boundary="circular")
    net = pilots.ProxGradUNet(op, width=4, levels=2, convs=2, iterations=2, init="smooth")
    for size in (32, 48, 100):  # multiples of 2**levels; the blur is rebuilt at each size
        assert net(torch.rand(1, 1, size, size)).shape == (1, 1, size, size)
    with pytest.raises(NotImplementedError, match="back-propagation only"):
        net.lifted_layers(0)


def test_pilot_script_refuses_pilot_steps_for_lifted_trainers(load_script, pilots, capsys):
    script = load_script("liftinv_bench_pg_size_pilots", BENCH / "pg_size_pilots.py")
    for flags in (["--method", "bregman-isgm"], ["--dilations", "1,2,1,1"], ["--circular"]):
        with pytest.raises(SystemExit):
            script.main(["X", "--prox", "unet", *flags])
        assert "--prox unet" in capsys.readouterr().err
