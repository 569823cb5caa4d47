"""Back-propagation baselines (SGD with momentum, Adam) on the nested loss, same data and loss as the lifted trainers."""

from __future__ import annotations

import torch

from liftinv.training.loop import _check_batch_size, minibatches, nested_loss, targets_for_loss
from liftinv.training.registry import register_method

__all__ = ["BackpropTrainer", "BackpropAdam", "BackpropSGD"]


class BackpropTrainer:
    """Back-propagation baseline: mini-batch SGD (momentum 0.9) or Adam on the nested loss.

    The same network, loss and data as the lifted trainers, so the comparison is like for like.

    Options: ``lr`` (default 0.1 for SGD, 1e-3 for Adam), ``batch_size`` (default 64), ``weight_decay``
    and a step schedule: the step size of (0-based) epoch ``e`` is
    ``lr * lr_decay ** #{m in lr_decay_epochs : e >= m}``, i.e. it is multiplied by ``lr_decay`` (default
    0.1) after ``m`` epochs for every ``m`` in ``lr_decay_epochs`` (default: none, a constant step). The
    step size depends on the epoch number only, so a run resumed from a checkpoint follows the same
    schedule. Friesen & Domingos (ICLR 2018) train with Adam, weight decay 5e-4, and decay the step by 0.1
    after 200 and 250 of 300 epochs.
    """

    optimizer_name = "adam"

    def __init__(
        self,
        model,
        X,
        Y,
        *,
        loss="mse",
        seed=0,
        lr=None,
        batch_size=64,
        weight_decay=0.0,
        lr_decay_epochs=(),
        lr_decay=0.1,
    ):
        _check_batch_size(batch_size)
        if lr is not None and not (isinstance(lr, (int, float)) and lr > 0):
            raise ValueError(f"lr must be positive, got {lr!r}")
        if not (isinstance(weight_decay, (int, float)) and weight_decay >= 0):
            raise ValueError(f"weight_decay must be a non-negative number, got {weight_decay!r}")
        milestones = tuple(lr_decay_epochs or ())
        if any(not isinstance(m, int) or isinstance(m, bool) or m < 1 for m in milestones):
            raise ValueError(f"lr_decay_epochs must be positive epoch counts (ints), got {lr_decay_epochs!r}")
        if not (isinstance(lr_decay, (int, float)) and 0 < lr_decay <= 1):
            raise ValueError(f"lr_decay must be a factor in (0, 1], got {lr_decay!r}")
        self.lr_decay_epochs, self.lr_decay = milestones, float(lr_decay)
        self.model, self.X, self.loss = model, X, loss
        was_training = model.training
        model.eval()  # probe the output size without touching batch-norm statistics
        with torch.no_grad():
            n_out = model(X[:1]).shape[1]
        model.train(was_training)
        self.T = targets_for_loss(Y, n_out, loss, X.dtype)
        self.batch_size = batch_size
        params = [p for p in model.parameters() if p.requires_grad]
        if self.optimizer_name == "sgd":
            self.opt = torch.optim.SGD(
                params, lr=0.1 if lr is None else lr, momentum=0.9, weight_decay=weight_decay
            )
        else:
            self.opt = torch.optim.Adam(params, lr=1e-3 if lr is None else lr, weight_decay=weight_decay)
        self.base_lr = self.opt.param_groups[0]["lr"]

    def lr_at(self, epoch: int) -> float:
        """Step size of the 0-based ``epoch`` under the step schedule (see the class docstring)."""
        return self.base_lr * self.lr_decay ** sum(epoch >= m for m in self.lr_decay_epochs)

    def run_epoch(self, epoch: int, generator: torch.Generator) -> dict[str, float]:
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(epoch)
        total = 0.0
        for idx in minibatches(self.X.shape[0], self.batch_size, generator):
            idx = idx.to(self.X.device)
            self.opt.zero_grad(set_to_none=True)
            value = nested_loss(self.model(self.X[idx]), self.T[idx], self.loss)
            value.backward()
            self.opt.step()
            total += float(value.detach()) * idx.numel()
        return {"objective": total / self.X.shape[0]}

    def state_dict(self):
        return {"optimizer": self.opt.state_dict()}

    def load_state_dict(self, d):
        self.opt.load_state_dict(d["optimizer"])


@register_method("backprop-adam")
class BackpropAdam(BackpropTrainer):
    __doc__ = BackpropTrainer.__doc__
    optimizer_name = "adam"


@register_method("backprop-sgd")
class BackpropSGD(BackpropTrainer):
    __doc__ = BackpropTrainer.__doc__
    optimizer_name = "sgd"
