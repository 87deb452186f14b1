"""Dropout for CPU training, with masks drawn faster than torch draws them.

On a CPU, torch draws a dropout mask one Mersenne Twister number per element, on one thread, which
makes drawing masks a large part of a small model's training step. Here a mask comes from numpy's
PCG64 generator, four 16-bit numbers out of every 64-bit one, and is applied with vectorised byte
and bf16 arithmetic. What that is worth in training: docs/speed.md, measured by
``python benchmarks/train_throughput.py --only c_torch_dropout``.

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

LEVELS = 1 << 16  # a mask element is one uniform 16-bit number

TORCH_DROPOUT = F.dropout  # torch's own, whatever FastCpuDropout puts in its place


def dropped_levels(p: float) -> int:
    """Of the 65,536 values a draw can take, how many drop the element at rate ``p``."""
    return round(p * LEVELS)


def rounded_rate(p: float) -> float:
    """The dropout rate actually applied for ``p``: the nearest multiple of 1/65,536."""
    return dropped_levels(p) / LEVELS


def keep_from_draws(draws: torch.Tensor, p: float) -> torch.Tensor:
    """A uint8 mask, 1 where an element is kept, from int16 draws uniform over [-32768, 32767]."""
    # The uint8 view is for the conversion to x's dtype that follows: torch converts bool tensors
    # element by element, the same bytes seen as uint8 with vector instructions.
    return draws.ge(dropped_levels(p) - LEVELS // 2).view(torch.uint8)


def keep_mask(shape: torch.Size, p: float) -> tuple[torch.Tensor, float]:
    """A uint8 mask, 1 where an element is kept, and the scale for kept elements.

    Needs ``0 < rounded_rate(p) < 1``.
    """
    n = math.prod(shape)
    seed = int(torch.randint(0, 2**63 - 1, ()))
    words = np.random.PCG64(seed).random_raw((n + 3) // 4)  # four 16-bit draws per 64-bit word
    draws = torch.from_numpy(words.view(np.int16)[:n]).view(shape)
    return keep_from_draws(draws, p), 1 / (1 - rounded_rate(p))


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
    if not 0 < dropped_levels(p) < LEVELS:
        return TORCH_DROPOUT(x, p, training=True)  # nothing or everything dropped: torch's own handles it
    return _Dropout.apply(x, p)


def _routed_dropout(input: torch.Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> torch.Tensor:
    """``torch.nn.functional.dropout``, with :func:`dropout` for training-mode CPU tensors."""
    if training and not inplace and input.device.type == "cpu":
        return dropout(input, p)
    return TORCH_DROPOUT(input, p, training, inplace)


class FastCpuDropout:
    """While active, ``torch.nn.functional.dropout`` on CPU tensors in training mode uses :func:`dropout`.

    Everything else (evaluation mode, in-place dropout, tensors on a GPU, where torch's own kernel
    is fast) goes to torch unchanged. It swaps the function in ``torch.nn.functional`` for the
    duration, which ``nn.Dropout`` and models' attention code look up at every call. A
    ``TorchFunctionMode`` would see the calls without the swap, but it puts a Python detour on
    every torch call of the forward pass, which costs more than the swap. Being a swap, it
    reaches every thread while active: the train stage runs the model on one thread.
    """

    def __enter__(self) -> FastCpuDropout:
        self._outer = F.dropout  # restored on exit, so that nested uses unwind in order
        F.dropout = _routed_dropout
        return self

    def __exit__(self, *exc_info) -> None:
        F.dropout = self._outer
