"""Numeric precision: bf16/fp16 autocast where the hardware has it, loss scaling for fp16, and the
CUDA settings that decide how repeatable and how fast a GPU run is.

Training and evaluation both run their forward passes under the context :func:`autocast_for` gives,
for the precision :func:`precision_on` settles.
"""

from __future__ import annotations

import contextlib
import os
import sys

import torch

from pipeline.errors import PipelineError


def bf16_is_native(device: torch.device) -> bool:
    """bf16 matrix units in the hardware: Ampere or later on CUDA, AVX-512 BF16 or AMX on CPUs.

    ``torch.cuda.is_bf16_supported()`` alone also counts emulation (V100, T4), which runs bf16
    slower than fp32; only native support is counted here.
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def precision_on(precision: str, device: torch.device, key: str = "train.precision") -> str:
    """The precision a run actually uses on ``device``: bf16 where the hardware has bf16 matrix units;
    on a GPU without them, fp16 with a gradient scaler; on a CPU without them, fp32, since emulated
    bf16 runs many times slower than fp32 there (docs/notebook.md). Everything else stays as asked."""
    if precision != "bf16" or bf16_is_native(device):
        return precision
    if device.type == "cuda":
        fallback, where = "fp16", f"{torch.cuda.get_device_name(device)} has"
    else:
        fallback, where = "fp32", "this CPU (no AVX-512 BF16 or AMX) has"
    print(
        f"warning: {key}=bf16 but {where} no native bf16; using {fallback} instead"
        + (" with a gradient scaler" if fallback == "fp16" else ""),
        file=sys.stderr,
    )
    return fallback


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


def configure_cuda(device: torch.device, deterministic: bool, tf32: bool) -> None:
    """Repeatability and TF32 on a GPU, set before the first CUDA kernel runs; nothing on CPUs.

    ``deterministic``: the same seed gives the same weights, bit for bit, on the same GPU and
    software (CPU runs always do). Kernels that add with atomics in a varying order are swapped for
    ordered ones, and cuBLAS gets a fixed workspace; the loop also trains with the plain attention
    (see ``training.training_attention``), since the fused SDPA backward kernels are not
    deterministic. What it cost on a GPU: docs/notebook.md.
    ``tf32``: fp32 matrix products in TF32 (10-bit mantissa) on Ampere and later; it changes the
    fp32 parts of a run, not bf16/fp16 autocast's matrix products.
    """
    if device.type != "cuda":
        return
    if deterministic:
        # cuBLAS reads this when it creates its handle, at the first matrix product.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # warn_only: an op with no ordered kernel warns (and the run says so) rather than stopping a long run.
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.benchmark = not deterministic
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
