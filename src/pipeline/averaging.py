"""Weight averaging: an exponential moving average (EMA) of the weights over the optimizer steps.

The model that is validated and saved is the average, not the last step's weights: it smooths out
the noise of the last few hundred mini-batches, which a single step's weights carry in full. With
``decay`` d, the step t before the latest weighs (1 - d) · d^t: d = 0.999 averages over about the
last 1,000 steps, d = 0.99 over the last 100.

The average starts at zero and is divided by 1 - d^steps when it is read, as Adam's moments are:
the pretrained weights the run starts from, and the untrained head, weigh nothing in it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


class WeightAverage:
    """An fp32 moving average of each trainable parameter of ``model``, updated after every step."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"decay must be in (0, 1), not {decay}")
        self.decay = decay
        self.steps = 0
        self.sums = {
            name: torch.zeros_like(parameter, dtype=torch.float32)
            for name, parameter in model.named_parameters()
            if parameter.requires_grad
        }

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Fold in the weights after an optimizer step: sum ← d · sum + (1 - d) · weights."""
        for name, parameter in model.named_parameters():
            if name in self.sums:
                self.sums[name].lerp_(parameter.float(), 1 - self.decay)
        self.steps += 1

    def averaged(self) -> dict[str, torch.Tensor]:
        """The average itself: each sum divided by the weight all the steps so far carry, 1 - d^steps."""
        if self.steps == 0:
            raise RuntimeError("no step has been averaged yet")
        total_weight = 1 - self.decay**self.steps
        return {name: total / total_weight for name, total in self.sums.items()}

    @contextlib.contextmanager
    def applied(self, model: torch.nn.Module) -> Iterator[None]:
        """Inside the block, ``model`` holds the averaged weights; after it, its own weights again."""
        parameters = {name: parameter for name, parameter in model.named_parameters() if name in self.sums}
        own = {name: parameter.detach().clone() for name, parameter in parameters.items()}
        _copy_into(parameters, self.averaged())
        try:
            yield
        finally:
            _copy_into(parameters, own)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The running sums, for a checkpoint; the step count is the loop's own (one update per step)."""
        return dict(self.sums)

    def load_state_dict(self, sums: dict[str, torch.Tensor], steps: int) -> None:
        if sums.keys() != self.sums.keys():
            raise ValueError("the saved average is of other parameters")
        for name, total in sums.items():
            self.sums[name].copy_(total)
        self.steps = steps


@torch.no_grad()
def _copy_into(parameters: dict[str, torch.nn.Parameter], values: dict[str, torch.Tensor]) -> None:
    for name, parameter in parameters.items():
        parameter.copy_(values[name])
