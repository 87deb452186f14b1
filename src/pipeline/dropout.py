"""Dropout for CPU training, with masks drawn several times faster than torch draws them.

On a CPU, torch draws a dropout mask one Mersenne Twister number per element, on one thread:
about 5 ns per element on a 2-core EPYC, which made drawing masks a fifth of a MiniLM training
step (``python benchmarks/train_throughput.py --profile``). Here a mask comes from numpy's PCG64
generator, four 16-bit numbers out of every 64-bit one (about 0.5 ns per element), and is applied
with vectorised byte and bf16 arithmetic.

It is the same dropout: every element is kept independently with probability ``1 - p`` and kept
elements are scaled by ``1 / (1 - p)``, except that ``p`` is rounded to the nearest multiple of
1/65,536 (0.1 becomes 0.100006) and the scale uses the rounded rate, so the expected output still
equals the input exactly. Every mask is seeded with a number drawn from torch's default
generator, so ``torch.manual_seed`` and the random state a checkpoint saves decide the masks just
as they decide torch's own.

Models call ``torch.nn.functional.dropout`` from their ``nn.Dropout`` layers and their attention
code; :class:`FastCpuDropout` reroutes those calls while it is active, for any architecture.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

LEVELS = 1 << 16  # a mask element is one uniform 16-bit number


def rounded_rate(p: float) -> float:
    """The dropout rate actually applied for ``p``: the nearest multiple of 1/65,536."""
    return round(p * LEVELS) / LEVELS


def keep_mask(shape: torch.Size, p: float) -> tuple[torch.Tensor, float]:
    """A uint8 mask, 1 where an element is kept, and the scale for kept elements.

    Needs ``0 < rounded_rate(p) < 1``.
    """
    dropped_levels = round(p * LEVELS)  # of the 65,536 values a draw can take, this many drop the element
    n = math.prod(shape)
    seed = int(torch.randint(0, 2**63 - 1, ()))
    words = np.random.PCG64(seed).random_raw(-(-n // 4))  # four 16-bit draws per 64-bit word
    draws = torch.from_numpy(words.view(np.int16)[:n]).view(shape)  # uniform over [-32768, 32767]
    # torch's comparisons on bool tensors are not vectorised; on the same bytes seen as uint8 they are.
    keep = draws.ge(dropped_levels - LEVELS // 2).view(torch.uint8)
    return keep, LEVELS / (LEVELS - dropped_levels)


class _Dropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        keep, scale = keep_mask(x.shape, p)
        ctx.save_for_backward(keep)  # one byte per element, where torch's dropout saves the mask in x's dtype
        ctx.scale = scale
        # Scaling after masking rounds once, in fp32 arithmetic, where a bf16 mask holding the
        # scale (torch's way) would round the scale itself to 1.109 for p = 0.1.
        return (x * keep.to(x.dtype)).mul_(scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (keep,) = ctx.saved_tensors
        return (grad * keep.to(grad.dtype)).mul_(ctx.scale), None


def dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Training-mode dropout of ``x`` at rate ``p`` (rounded to a multiple of 1/65,536)."""
    if not 0 < round(p * LEVELS) < LEVELS:
        return F.dropout(x, p, training=True)  # nothing or everything dropped: torch's own handles it
    return _Dropout.apply(x, p)


def _arguments(input, p=0.5, training=True, inplace=False):
    return input, p, training, inplace


class FastCpuDropout(TorchFunctionMode):
    """While active, ``torch.nn.functional.dropout`` on CPU tensors in training mode uses :func:`dropout`.

    Everything else (evaluation mode, in-place dropout, tensors on a GPU, where torch's own kernel
    is fast) goes to torch unchanged.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.dropout:
            x, p, training, inplace = _arguments(*args, **kwargs)
            if training and not inplace and x.device.type == "cpu":
                return dropout(x, p)
        return func(*args, **kwargs)
