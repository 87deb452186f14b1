"""The model card: ``README.md`` in the saved model folder, with the metadata the Hugging Face Hub reads.

``huggingface_hub``'s ``ModelCardData`` writes the YAML header (base model, data set, task, class
names, the base model's license, ``model-index`` with the validation results), so that
``ModelCard.load(folder)`` parses it and the Hub shows the results. The body says how to use the model
and how it was made: the params, the git revision and the command. Nothing in it depends on the time
or the machine, so the same run writes the same card.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from pipeline import tasks
from pipeline.config import Params
from pipeline.hub import looks_local


def base_model_license(model_name: str) -> str | None:
    """The license the base model's own card declares, if the card can be read (from the cache offline)."""
    local = Path(model_name).expanduser()
    try:
        card = ModelCard.load(local / "README.md" if local.is_dir() else model_name)
    except (OSError, ValueError):  # no card, or none in the cache: the license is left out, not guessed
        return None
    return card.data.license


def code_files() -> list[Path]:
    """The code this process runs: every ``pipeline`` module imported so far (the train stage imports
    exactly its dvc.yaml dependencies) and the entry script."""
    files = {
        Path(module.__file__).resolve()
        for name, module in list(sys.modules.items())
        if name.split(".")[0] == "pipeline" and getattr(module, "__file__", None)
    }
    if sys.argv and sys.argv[0].endswith(".py"):
        files.add(Path(sys.argv[0]).resolve())
    return sorted(files)


def git_revision(files: list[Path]) -> str | None:
    """The latest commit that changed any of ``files``; None outside a git repository.

    Only the run's own code counts: committing outputs (dvc.lock, metrics/), docs, params (the card
    lists them) or another stage's code leaves it alone, so a fresh clone's rerun writes the same card.
    """
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True
        ).stdout.strip()
        inside = [str(path) for path in files if path.is_relative_to(Path(top).resolve())]
        if not inside:
            return None
        done = subprocess.run(
            ["git", "log", "-1", "--format=%H", "--", *inside], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip() or None


def model_card(
    params: Params,
    label_names: list[str],
    headline: str,
    val_score: float,
    val_loss: float,
    command: str | None = None,
    teacher: dict | None = None,
    threshold: float | None = None,
) -> ModelCard:
    """The card of a model fine-tuned with ``params``, with its validation results: ``headline`` (the
    task's first metric, ``accuracy`` or ``pearson``) and the loss; ``teacher``: the teacher stage's
    ``meta.json`` of a distilled model; ``threshold``: the multi-label threshold ``train.select_threshold``
    chose."""
    data, base = params.data, params.model.name
    hub_dataset = not looks_local(data.path) and not data.files
    dataset_name = f"{data.path} ({data.config})" if data.config else data.path
    name = f"{Path(base).name}-finetuned-{Path(data.config or data.path).name}"
    results = [
        EvalResult(
            task_type="text-classification",
            task_name="Text Classification",
            dataset_type=data.path,
            dataset_name=dataset_name,
            dataset_config=data.config,
            dataset_split=data.eval_split,
            metric_type=metric,
            metric_name=metric.capitalize(),
            metric_value=value,
        )
        for metric, value in ((headline, round(val_score, 6)), ("loss", round(val_loss, 6)))
    ]
    card_data = ModelCardData(
        model_name=name,
        base_model=None if looks_local(base) else base,
        datasets=[data.path] if hub_dataset else None,
        license=base_model_license(base),
        library_name="transformers",
        pipeline_tag="text-classification",
        tags=["text-classification", "dvc", "fine-tuned"],
        eval_results=results,
        class_names=list(label_names),
    )
    command = command or shlex.join(["python", *sys.argv])
    revision = git_revision(code_files())
    recipe = yaml.safe_dump(
        {key: params.to_dict()[key] for key in ("data", "model", "tokenize", "train")}, sort_keys=False
    )
    distilled = ""
    if teacher is not None:
        teacher_recipe = yaml.safe_dump(teacher["recipe"], sort_keys=False)
        distilled = (
            f"\nDistilled from `{teacher['teacher']}`, fine-tuned on the same data by the same loop "
            f"(`train.distill_alpha` {params.train.distill_alpha:g}, `train.distill_temperature` "
            f"{params.train.distill_temperature:g}), with {teacher['n_augmented']:,} augmented inputs the "
            f"teacher labelled. The teacher's recipe:\n\n```yaml\n{teacher_recipe}```\n"
        )
    if params.data.task == "regression":
        what = f"to predict `{label_names[0]}`, a score (regression: one output, MSE loss)"
        adds, apply = "Spearman correlation, MSE and intervals", ', function_to_apply="none"'
    elif params.data.task == "multi_label":
        what = f"for multi-label text classification (a sigmoid per label). Labels ({len(label_names)}): " + ", ".join(
            f"`{c}`" for c in label_names
        )
        adds, apply = "micro-F1, exact match, mean average precision and intervals", ", top_k=None"
        if threshold is not None:
            what += (
                f". A label is given from probability {threshold:g}, the threshold of best macro-F1 on a slice "
                f"carved from training (`train.select_threshold`; `{tasks.SAVED_THRESHOLD}` in config.json)"
            )
    else:
        what = f"for text classification. Classes ({len(label_names)}): " + ", ".join(f"`{c}`" for c in label_names)
        adds, apply = "intervals, F1 and calibration", ""
    body = f"""
# {name}

`{base}` fine-tuned on {dataset_name} by a DVC pipeline with a hand-written PyTorch training loop,
{what}.
{distilled}
## Results

On the `{data.eval_split}` split, after training: {headline} **{val_score:.4f}**, loss {val_loss:.4f}.
The evaluate stage's `metrics/eval.json` adds {adds}.

## Use

```python
from transformers import pipeline

classify = pipeline("text-classification", model="path/to/this/folder"{apply})
classify("a gorgeous, witty, seductive movie.")
```

or `python -m pipeline predict --model path/to/this/folder "some text"`.

## How it was made

Git revision: `{revision or "not in a git repository"}` (the latest commit of the code this run ran;
its params, `dvc exp run -S` changes included, are below). Command (run by `dvc repro`):

```bash
{command}
```

Params (`params.yaml`):

```yaml
{recipe.rstrip()}
```
"""
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n{body}")
