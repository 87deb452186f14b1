import re
import subprocess
import sys

import pytest
import yaml
from conftest import PROJECT_ROOT

from pipeline.config import Params, TrainConfig, load_params, params_from_dict
from pipeline.errors import PipelineError


def test_project_params_file_is_valid_and_complete():
    params = load_params(PROJECT_ROOT / "params.yaml")
    raw = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    # Every key the code knows is written out in params.yaml, so `dvc exp run -S` can vary it.
    assert raw == params.to_dict()


def test_missing_sections_and_keys_take_defaults():
    assert params_from_dict({}) == Params()
    assert params_from_dict({"train": {"lr": 3e-5}}).train == TrainConfig(lr=3e-5)


def test_numbers_written_as_yaml_1_1_strings_are_accepted():
    # PyYAML reads "1e-5" (no dot) as a string.
    assert params_from_dict(yaml.safe_load("train:\n  lr: 1e-5\n")).train.lr == 1e-5
    assert params_from_dict({"train": {"max_grad_norm": 2}}).train.max_grad_norm == 2.0


@pytest.mark.parametrize(
    ("train", "steps_per_epoch", "epochs"),
    [
        ({}, 1053, 2),  # SST-2 at batch 64: two passes reach 2000 steps
        ({}, 58, 10),  # MRPC at batch 64: 35 passes would, the cap is 10
        ({}, 2000, 1),
        ({}, 2001, 1),  # never less than one pass
        ({"auto_min_steps": 100}, 30, 4),  # a last pass may run past the aim
        ({"auto_max_epochs": 3}, 58, 3),
        ({"epochs": 5}, 58, 5),  # an integer is taken as it is
    ],
)
def test_auto_epochs_are_the_fewest_passes_that_reach_the_aim_within_the_cap(train, steps_per_epoch, epochs):
    assert params_from_dict({"train": train}).train.epochs_for(steps_per_epoch) == epochs


@pytest.mark.parametrize("falsy", [0, [], False, ""])
def test_a_falsy_section_is_an_error_not_all_defaults(falsy):
    expected = re.escape(f"invalid parameter train={falsy!r}: expected a mapping of train.* keys")
    with pytest.raises(PipelineError, match=expected):
        params_from_dict({"train": falsy})


def test_an_empty_section_heading_takes_the_defaults():
    assert params_from_dict(yaml.safe_load("train:\nmodel:\n")) == Params()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"trian": {}}, "unknown parameter trian in params.yaml (did you mean train?)"),
        ({"train": {"learning_rate": 1e-4}}, "unknown parameter train.learning_rate"),
        ({"train": {"lr": 0}}, "invalid parameter train.lr=0.0: expected a number > 0"),
        ({"train": {"lr": -1e-5}}, "train.lr=-1e-05"),
        ({"train": {"lr": "fast"}}, "invalid parameter train.lr='fast': expected a number"),
        ({"train": {"epochs": 0}}, "invalid parameter train.epochs=0: expected an integer >= 1"),
        ({"train": {"seed": -1}}, "invalid parameter train.seed=-1: expected an integer in [0, 2**32)"),
        ({"data": {"subsample_seed": 2**32}}, "data.subsample_seed=4294967296"),
        ({"train": {"epochs": 2.5}}, "train.epochs=2.5: expected an integer or auto"),
        ({"train": {"epochs": True}}, "train.epochs=True: expected an integer or auto"),
        ({"train": {"epochs": "three"}}, "train.epochs='three': expected an integer >= 1 or auto"),
        ({"train": {"auto_min_steps": 0}}, "train.auto_min_steps=0: expected an integer >= 1"),
        ({"train": {"auto_max_epochs": 0}}, "train.auto_max_epochs=0: expected an integer >= 1"),
        (
            {"train": {"epochs": 3, "auto_max_epochs": 5}},
            "train.auto_max_epochs=5 shapes train.epochs: auto only, and train.epochs is 3: set train.epochs: auto, "
            "or leave train.auto_max_epochs at its default (10)",
        ),
        ({"train": {"batch_size": None}}, "train.batch_size=None: expected an integer"),
        ({"train": {"precision": "fp8"}}, "train.precision='fp8': expected one of fp32, bf16, fp16"),
        (
            {"train": {"precision": "fp16", "device": "cpu"}},
            "train.precision='fp16': expected fp32 or bf16 with train.device=cpu",
        ),
        ({"train": {"device": "tpu"}}, "train.device='tpu': expected one of auto, cpu, cuda"),
        ({"train": {"grad_accum_steps": 0}}, "train.grad_accum_steps=0: expected an integer >= 1"),
        ({"train": {"processes": 0}}, "train.processes=0: expected an integer >= 1"),
        ({"train": {"checkpoint_every_steps": -1}}, "train.checkpoint_every_steps=-1: expected an integer >= 0"),
        ({"model": {"trust_remote_code": "yes"}}, "model.trust_remote_code='yes': expected true or false"),
        ({"train": {"fast_dropout": 1}}, "train.fast_dropout=1: expected true or false"),
        ({"train": {"warmup_ratio": 1.0}}, "train.warmup_ratio=1.0: expected a number in [0, 1)"),
        ({"train": {"layer_lr_decay": 0}}, "train.layer_lr_decay=0.0: expected a number in (0, 1] (1: no decay)"),
        ({"train": {"layer_lr_decay": 1.2}}, "train.layer_lr_decay=1.2: expected a number in (0, 1]"),
        ({"train": {"label_smoothing": 1}}, "train.label_smoothing=1.0: expected a number in [0, 1) (0: none)"),
        ({"train": {"label_smoothing": -0.1}}, "train.label_smoothing=-0.1: expected a number in [0, 1)"),
        ({"train": {"class_weights": "inverse"}}, "train.class_weights='inverse': expected null, balanced, or a list"),
        ({"train": {"class_weights": [1, -1]}}, "train.class_weights=[1.0, -1.0]: expected one number > 0 per class"),
        ({"train": {"class_weights": [1, 0]}}, "train.class_weights=[1.0, 0.0]: expected one number > 0 per class"),
        (
            {"train": {"class_weights": ["a", 1]}},
            "train.class_weights=['a', 1]: expected a string or a list of numbers",
        ),
        ({"train": {"ema_decay": 0.999}}, "unknown parameter train.ema_decay"),
        ({"tokenize": {"max_length": 1}}, "tokenize.max_length=1: expected an integer >= 2"),
        ({"data": {"max_train_samples": 0}}, "data.max_train_samples=0"),
        ({"evaluate": {"batch_size": "8"}}, "evaluate.batch_size='8': expected an integer"),
        ({"evaluate": {"precision": "int8"}}, "evaluate.precision='int8': expected one of fp32, bf16, fp16"),
        ({"model": {"name": ""}}, "model.name=''"),
        ({"train": 3}, "invalid parameter train=3: expected a mapping"),
        ([1, 2], "expected a mapping of sections"),
    ],
)
def test_bad_values_are_rejected_with_the_key_and_allowed_values(raw, message):
    with pytest.raises(PipelineError) as error:
        params_from_dict(raw)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_malformed_yaml_names_the_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  lr: [1e-4\n  epochs: 3\n")
    with pytest.raises(PipelineError, match=r"params.yaml: not valid YAML at line \d+"):
        load_params(path)


def test_missing_params_file(tmp_path):
    with pytest.raises(PipelineError, match="file not found"):
        load_params(tmp_path / "params.yaml")


def test_cli_prints_one_line_and_exits_2(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  precison: bf16\n")
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "validate", "--params", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr == "error: unknown parameter train.precison in params.yaml (did you mean train.precision?)\n"
    assert result.stdout == ""
