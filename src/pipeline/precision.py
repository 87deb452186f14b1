"""Numeric precision: bf16/fp16 autocast where the hardware has it, and loss scaling for fp16.

Training and evaluation both run their forward passes under the context :func:`autocast_for` gives.
"""

from __future__ import annotations

import contextlib
import sys

import torch

from pipeline.errors import PipelineError


def bf16_is_native(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def autocast_for(
    precision: str, device: torch.device, key: str = "train.precision"
) -> contextlib.AbstractContextManager:
    """bf16/fp16 autocast keeps fp32 weights and runs matrix products in 16 bits; fp32 changes nothing.

    ``key`` is the parameter ``precision`` came from, for messages.
    """
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16":
        if device.type != "cuda":
            raise PipelineError(f"{key}=fp16 needs a CUDA GPU; use bf16 or fp32 on a CPU")
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    if not bf16_is_native(device):
        print(
            f"warning: {key}=bf16 but this {device.type} has no native bf16; it may be slower than fp32",
            file=sys.stderr,
        )
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def grad_scaler_for(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """fp16 gradients underflow without loss scaling; bf16 and fp32 have fp32's range and need none.

    A disabled scaler passes everything through unchanged, so one loop serves every precision.
    """
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")
