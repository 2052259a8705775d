"""Train/eval mode, set for a while and given back exactly.

``net.train(was_training)`` after a prediction gives every submodule the top-level flag, so a
BatchNorm that was frozen on purpose (``bn.eval()`` inside a training net, as when fine-tuning
with frozen statistics) would start updating its running statistics again. :func:`eval_mode`
records each submodule's own flag and restores them one by one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

__all__ = ["eval_mode"]


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Put ``module`` and all its submodules in eval mode inside the ``with`` block; afterwards
    give each submodule the flag it had before (also when the block raises).

    >>> import torch
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    >>> _ = net[1].eval()  # a frozen BatchNorm inside a training net
    >>> with eval_mode(net):
    ...     _ = net(torch.zeros(1, 3, 5, 5))
    >>> net.training, net[1].training
    (True, False)
    """
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, mode in modes:
            m.training = mode
