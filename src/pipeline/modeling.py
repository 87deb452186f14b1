"""Model I/O: load any sequence classifier by Hub id or local folder, save the fine-tuned result.

The ``Auto*`` classes pick the architecture from the checkpoint's ``config.json``, so BERT, MiniLM,
DistilBERT, RoBERTa… all go through the same few functions.
"""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.errors import PipelineError
from pipeline.hub import looks_local, not_found
from pipeline.outputs import atomic_directory


def _check_local(name: str, key: str) -> None:
    folder = Path(name).expanduser()
    if looks_local(name) and not folder.is_dir():
        raise PipelineError(
            f"{key}={name!r}: no such model folder (give a folder saved with save_pretrained, or a Hub model id)"
        )
    if folder.is_dir() and not (folder / "config.json").is_file():
        raise PipelineError(
            f"{key}={name!r}: folder has no config.json, so it is not a saved model (save it with save_pretrained)"
        )


def load_config(name: str, key: str = "model.name", trust_remote_code: bool = False):
    from transformers import AutoConfig

    _check_local(name, key)
    try:
        return AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise not_found("model", name, key, exc) from None


def load_tokenizer(name: str, key: str = "model.name", trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    _check_local(name, key)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise not_found("tokenizer of model", name, key, exc) from None
    if not tokenizer.is_fast:
        raise PipelineError(
            f"{key}={name!r}: only a slow (Python) tokenizer is available; "
            f"the pipeline needs a fast one (tokenizer.json)"
        )
    return tokenizer


def max_sequence_length(config, tokenizer) -> int:
    """The longest input the model accepts: its position embeddings and its tokenizer's limit, whichever is less.

    Both count: RoBERTa has 514 position embeddings but takes 512 tokens.
    """
    limits = [
        getattr(config, attr) for attr in ("max_position_embeddings", "n_positions") if getattr(config, attr, None)
    ]
    tokenizer_limit = tokenizer.model_max_length
    if tokenizer_limit < 1_000_000:  # tokenizers without a limit report a huge sentinel
        limits.append(tokenizer_limit)
    return int(min(limits))


def _fp32() -> dict[str, torch.dtype]:
    """``from_pretrained``'s argument for fp32 weights, under the name this transformers version knows.

    transformers 5 loads a model in the dtype it was published in; a model published in fp16 or bf16
    would then train without fp32 master weights (and fp16 gradients cannot be unscaled). Training and
    autocast both need fp32 weights, whatever the file holds.
    """
    import transformers
    from packaging.version import Version

    return {("dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"): torch.float32}


def load_pretrained_classifier(
    name: str,
    label_names: list[str],
    trust_remote_code: bool = False,
    attn_implementation: str | None = None,
    problem_type: str = "single_label_classification",
):
    """A pretrained encoder with a fresh head sized and labelled for ``label_names`` (one name, one output
    for regression), its config's ``problem_type`` set (:data:`pipeline.tasks.PROBLEM_TYPES`).

    ``trust_remote_code`` stays off unless ``model.trust_remote_code`` turns it on: a model that
    needs its own Python code then fails to load instead of running that code.
    ``attn_implementation`` (``"eager"``, ``"sdpa"``, ...) picks the attention code; None: the
    library's default. It is not saved with the model.
    """
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as transformers_logging

    _check_local(name, "model.name")
    # The load report would list the new head as "missing" weights: expected here, not worth a warning.
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            name,
            trust_remote_code=trust_remote_code,
            attn_implementation=attn_implementation,
            num_labels=len(label_names),
            id2label=dict(enumerate(label_names)),
            label2id={label: i for i, label in enumerate(label_names)},
            problem_type=problem_type,
            **_fp32(),
        )
    except (OSError, ValueError) as exc:
        raise not_found("model", name, "model.name", exc) from None
    finally:
        transformers_logging.set_verbosity(verbosity)


def load_finetuned(folder: str | Path):
    """A classifier saved by :func:`save_finetuned` (or any ``save_pretrained`` folder), in fp32."""
    from transformers import AutoModelForSequenceClassification

    folder = Path(folder)
    from safetensors import SafetensorError

    if not (folder / "config.json").is_file():
        raise PipelineError(f"{folder}: no fine-tuned model here (run the train stage first: dvc repro train)")
    try:
        return AutoModelForSequenceClassification.from_pretrained(folder, **_fp32())
    except (OSError, ValueError, SafetensorError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PipelineError(
            f"{folder}: the fine-tuned model cannot be loaded ({reason}); "
            f"rerun the train stage: dvc repro --force train"
        ) from None


def save_finetuned(model, tokenizer, folder: str | Path, card=None) -> None:
    """``save_pretrained`` model (safetensors), tokenizer and model card (a ``huggingface_hub.ModelCard``,
    saved as README.md) into ``folder``, all at once or not at all."""
    with atomic_directory(folder) as staging:
        model.save_pretrained(staging)  # safetensors: the format transformers writes by default
        tokenizer.save_pretrained(staging)
        if card is not None:
            card.save(staging / "README.md")
