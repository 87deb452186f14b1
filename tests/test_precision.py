"""Which precision a run gets: bf16 only where the hardware has bf16 matrix units."""

import pytest
import torch

from pipeline import precision
from pipeline.precision import precision_on


@pytest.mark.parametrize(
    ("device", "native", "expected"),
    [
        ("cpu", True, "bf16"),
        ("cpu", False, "fp32"),  # emulated bf16 is many times slower than fp32 on such a CPU
        ("cuda", True, "bf16"),
        ("cuda", False, "fp16"),  # V100, T4: fp16 with a gradient scaler
    ],
)
def test_bf16_falls_back_where_the_hardware_has_no_native_bf16(monkeypatch, capsys, device, native, expected):
    monkeypatch.setattr(precision, "bf16_is_native", lambda _device: native)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda _device=None: "Tesla T4")
    assert precision_on("bf16", torch.device(device), key="evaluate.precision") == expected
    warning = capsys.readouterr().err
    if native:
        assert warning == ""
    else:
        assert warning.startswith("warning: evaluate.precision=bf16 but ") and f"using {expected} instead" in warning


@pytest.mark.parametrize("asked", ["fp32", "fp16"])
def test_other_precisions_stay_as_asked(monkeypatch, asked):
    monkeypatch.setattr(precision, "bf16_is_native", lambda _device: False)
    assert precision_on(asked, torch.device("cuda")) == asked
