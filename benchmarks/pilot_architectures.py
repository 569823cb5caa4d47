"""Pilot-only proximal steps for :class:`liftinv.models.UnrolledProxGradCNN` (issue 12, deblurring).

Used by ``benchmarks/pg_size_pilots.py --prox unet|memory`` to test, on validation data only, whether another
proximal-step architecture lifts the deblurring ceiling of the DnCNN-like step. They are trained by
back-propagation only: their lifted form is not written (``lifted_layers`` raises), so they are not part of
the library. Each layer would be of the lifted form (stride-2 and transposed convs are linear, the U-Net's skip
connections are sums in an affine map, leaky ReLU activations), so a pilot that passed its rule would go into
the library with its lifted form.

* :class:`ProxGradUNet` -- every proximal step a small U-Net (multi-scale, as the DRUNet prior of DPIR and
  USRNet): ``x_{k+1} = z_k + UNet_k(z_k)``, ``z_k`` the gradient data step.
* :class:`ProxGradMemory` -- the DnCNN-like step reads and writes ``memory`` channels carried from one
  iteration to the next, as the primal memory of Learned Primal-Dual:
  ``[dx, s_{k+1}] = CNN_k([z_k, s_k])``, ``x_{k+1} = z_k + dx``, ``s_0 = 0``.

Figures of 2026-11-27 (50 epochs, validation PSNR; the default step A: 25.336): README, "Learned
reconstruction"; ``benchmarks/results/pg_size_pilots.json``.

References
----------
Ronneberger, Fischer & Brox, *U-Net*, MICCAI 2015; Zhang et al., *Plug-and-Play Image Restoration with Deep
Denoiser Prior* (DPIR), IEEE TPAMI 44(10), 2022; Adler & Oktem, *Learned Primal-Dual Reconstruction*, IEEE
TMI 37(6), 2018.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from liftinv.models import UnrolledProxGradCNN
from liftinv.models.learned_base import _cnn

__all__ = ["ProxGradUNet", "ProxGradMemory", "PILOT_PROX"]


class _UNet(nn.Module):
    """``levels`` stride-2 downsamplings (channels ``width * 2^l``), ``convs`` 3x3 convs per level, transposed
    convs up with additive skips, leaky ReLU (slope 0.1), a last 3x3 conv to ``channels`` (gain
    ``last_gain``). Image sides must be multiples of ``2^levels``."""

    def __init__(self, channels, width, levels, convs, generator, last_gain=0.1):
        super().__init__()
        self.act = nn.LeakyReLU(0.1)
        ch = [width * 2**level for level in range(levels + 1)]
        self.inc = nn.Conv2d(channels, ch[0], 3, padding=1)
        self.enc, self.down, self.up, self.dec = (nn.ModuleList() for _ in range(4))
        self.enc.append(nn.ModuleList(nn.Conv2d(ch[0], ch[0], 3, padding=1) for _ in range(convs - 1)))
        for level in range(1, levels + 1):
            self.down.append(nn.Conv2d(ch[level - 1], ch[level], 2, stride=2))
            n = convs - 1 if level < levels else convs
            self.enc.append(nn.ModuleList(nn.Conv2d(ch[level], ch[level], 3, padding=1) for _ in range(n)))
        for level in range(levels, 0, -1):
            self.up.append(nn.ConvTranspose2d(ch[level], ch[level - 1], 2, stride=2))
            self.dec.append(
                nn.ModuleList(nn.Conv2d(ch[level - 1], ch[level - 1], 3, padding=1) for _ in range(convs - 1))
            )
        self.outc = nn.Conv2d(ch[0], channels, 3, padding=1)
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                    gain = last_gain if m is self.outc else 1.0
                    nn.init.xavier_uniform_(m.weight, gain=gain, generator=generator)
                    m.bias.zero_()

    def forward(self, z: Tensor) -> Tensor:
        act = self.act
        h = act(self.inc(z))
        for conv in self.enc[0]:
            h = act(conv(h))
        skips = [h]
        for level, down in enumerate(self.down, start=1):
            h = act(down(h))
            for conv in self.enc[level]:
                h = act(conv(h))
            skips.append(h)
        skips.pop()
        for up, dec in zip(self.up, self.dec, strict=True):
            h = act(up(h) + skips.pop())
            for conv in dec:
                h = act(conv(h))
        return self.outc(h)


class _BackpropOnly:
    def lifted_layers(self, offset: int = 0):
        raise NotImplementedError(f"{type(self).__name__} is a pilot architecture: back-propagation only")


class ProxGradUNet(_BackpropOnly, UnrolledProxGradCNN):
    """Unrolled proximal gradient with a U-Net proximal step per iteration (see the module docstring).

    Parameters
    ----------
    operator
        As :class:`~liftinv.models.UnrolledProxGradCNN`.
    width, levels, convs : int, default 32, 2, 2
        Channels at full resolution, number of downsamplings, convs per level.
    **kwargs
        Passed to :class:`~liftinv.models.UnrolledProxGradCNN` (``iterations``, ``init``, ``seed``...).
    """

    def __init__(self, operator, width: int = 32, levels: int = 2, convs: int = 2, **kwargs):
        super().__init__(operator, depth=2, width=4, **kwargs)  # its own CNNs are dropped below
        g = torch.Generator().manual_seed(kwargs.get("seed", 0) + 1)
        c = self.image_size[0]
        self.unets = nn.ModuleList(_UNet(c, width, levels, convs, g) for _ in range(self.iterations))
        del self.cnns

    def forward(self, y: Tensor) -> Tensor:
        x = None
        for k in range(self.iterations):
            z = self._data_step(k, x, y)
            x = z + self.unets[k](z)
        return x


class ProxGradMemory(_BackpropOnly, UnrolledProxGradCNN):
    """Unrolled proximal gradient whose DnCNN-like steps carry ``memory`` channels (see the module docstring).

    Parameters
    ----------
    operator
        As :class:`~liftinv.models.UnrolledProxGradCNN`.
    memory : int, default 5
        Memory channels (LPD's default).
    depth, width : int, default 4, 32
        As :class:`~liftinv.models.UnrolledProxGradCNN`.
    **kwargs
        Passed to :class:`~liftinv.models.UnrolledProxGradCNN`.
    """

    def __init__(self, operator, memory: int = 5, depth: int = 4, width: int = 32, **kwargs):
        super().__init__(operator, depth=depth, width=width, **kwargs)
        g = torch.Generator().manual_seed(kwargs.get("seed", 0) + 2)
        c, self.memory = self.image_size[0], memory
        channels = [c + memory] + [width] * (depth - 1) + [c + memory]
        self.cnns = nn.ModuleList(_cnn(channels, 3, g, 0.1) for _ in range(self.iterations))

    def forward(self, y: Tensor) -> Tensor:
        x = s = None
        for k in range(self.iterations):
            z = self._data_step(k, x, y)
            if s is None:
                s = z.new_zeros(z.shape[0], self.memory, *z.shape[2:])
            h = torch.cat([z, s], 1)
            convs = self.cnns[k]
            for conv in convs[:-1]:
                h = self.activation(conv(h))
            out = convs[-1](h)
            c = z.shape[1]
            x, s = z + out[:, :c], out[:, c:]
        return x


#: ``--prox`` name of pg_size_pilots.py -> pilot class (``dncnn``: the library's own step)
PILOT_PROX = {"unet": ProxGradUNet, "memory": ProxGradMemory}
