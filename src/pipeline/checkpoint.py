"""Checkpoints of the train stage: stop it anywhere, run it again, and it goes on exactly where it was.

A checkpoint is one folder, ``step-0000200``, in the train stage's checkpoint output:

- ``model.safetensors``: the weights;
- ``optimizer.safetensors``: AdamW's moments and step counts;
- ``tensors.safetensors``: each process's torch RNG state and running loss sums;
- ``state.json``: each process's loop position and counters, Python and NumPy RNG states, the
  scheduler and loss-scaler state, the optimizer's settings, the params the run was started with,
  and a SHA-256 of each file above.

Everything is safetensors or JSON, so loading a checkpoint never unpickles anything. A folder is
written under a hidden name and renamed into place, so it is complete or absent; a new checkpoint
then supersedes every other entry of the folder, and a finished run leaves only ``finished.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model

from pipeline.errors import PipelineError, first_line
from pipeline.outputs import disk_full_error, write_json_atomic

FORMAT = 3
_STEP_FOLDER = re.compile(r"step-(\d+)")
_FILES = ("model.safetensors", "optimizer.safetensors", "tensors.safetensors")
_BEST = "best.safetensors"  # with train.select_best, once an epoch has been scored


def capture_rng(device: torch.device) -> dict[str, Any]:
    """This process's random number generators, in a form that survives JSON and safetensors."""
    version, mt_state, gauss = random.getstate()
    name, keys, position, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(mt_state), gauss],
        "numpy": [name, keys.tolist(), position, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: dict[str, Any], device: torch.device) -> None:
    version, mt_state, gauss = state["python"]
    random.setstate((version, tuple(mt_state), gauss))
    name, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


@dataclass
class Checkpoint:
    """A checkpoint read back from disk, ready to be put into a freshly built model and optimizer."""

    folder: Path
    state: dict[str, Any]
    tensors: dict[str, torch.Tensor]

    def restore(self, model, optimizer, scheduler, scaler, rank: int, device: torch.device) -> dict[str, Any]:
        """Load weights, optimizer, scheduler, loss scaler and this rank's RNGs; return the loop's state."""
        try:
            load_model(model, self.folder / "model.safetensors", strict=True, device=str(device))
        except (RuntimeError, SafetensorError) as exc:
            raise self.unusable(f"its weights do not fit the model ({first_line(exc)})") from None
        optimizer_tensors = load_file(self.folder / "optimizer.safetensors")
        groups = [{**group, "betas": tuple(group["betas"])} for group in self.state["optimizer_groups"]]
        per_parameter: dict[int, dict[str, torch.Tensor]] = {}
        for key, tensor in optimizer_tensors.items():
            index, name = key.split("/")
            per_parameter.setdefault(int(index), {})[name] = tensor
        optimizer.load_state_dict({"state": per_parameter, "param_groups": groups})
        scheduler.load_state_dict(self.state["scheduler"])
        if self.state["scaler"]:
            scaler.load_state_dict(self.state["scaler"])
        saved = self.state["ranks"][rank]
        rng = {
            **saved["rng"],
            **{
                kind: self.tensors[f"{rank}/rng/{kind}"]
                for kind in ("torch", "cuda")
                if f"{rank}/rng/{kind}" in self.tensors
            },
        }
        restore_rng(rng, device)
        prefix = f"{rank}/loop/"
        loop_tensors = {
            key.removeprefix(prefix): t.to(device) for key, t in self.tensors.items() if key.startswith(prefix)
        }
        return {**saved["loop"], "tensors": loop_tensors}

    def best_weights(self) -> dict[str, torch.Tensor] | None:
        """The best epoch's weights, if the run kept any (``train.select_best``)."""
        if _BEST not in self.state["sha256"]:
            return None
        try:
            return load_file(self.folder / _BEST)
        except SafetensorError as exc:
            raise self.unusable(f"{_BEST} cannot be read ({first_line(exc)})") from None

    def unusable(self, why: str) -> PipelineError:
        return PipelineError(
            f"checkpoint {self.folder} is unusable: {why} (delete it to start training over: rm -r {self.folder})"
        )


class CheckpointFolder:
    """The train stage's checkpoint output: at most one checkpoint, the latest, at any time."""

    def __init__(self, root: str | Path, run_params: dict[str, Any]):
        self.root = Path(root)
        self.run_params = run_params  # what a checkpoint must have been made with to be resumed

    def latest(self) -> Path | None:
        found = [(int(m.group(1)), p) for p in self.root.glob("step-*") if (m := _STEP_FOLDER.fullmatch(p.name))]
        return max(found)[1] if found else None

    def resumable(self) -> Checkpoint | None:
        """The latest checkpoint if it was made with the same training params; None to start over.

        A damaged checkpoint is an error, not a reason to start over silently: it says what happened.
        """
        folder = self.latest()
        if folder is None:
            return None
        state = self._read_state(folder)
        changed = [
            key
            for key in sorted(set(state["params"]) | set(self.run_params))
            if state["params"].get(key) != self.run_params.get(key)
        ]
        if state.get("format") != FORMAT or changed:
            why = (
                f"{changed[0]} was {state['params'].get(changed[0])!r}, now {self.run_params.get(changed[0])!r}"
                if changed
                else "it was written by another version of the pipeline"
            )
            print(f"not resuming from {folder}: {why}; training starts over", file=sys.stderr, flush=True)
            return None
        checkpoint = Checkpoint(folder, state, {})
        for name in dict.fromkeys([*_FILES, *state["sha256"]]):
            if _sha256(folder / name) != state["sha256"].get(name):
                raise checkpoint.unusable(f"{name} is damaged or truncated (its SHA-256 does not match state.json)")
        try:
            checkpoint.tensors = load_file(folder / "tensors.safetensors")
        except SafetensorError as exc:
            raise checkpoint.unusable(f"tensors.safetensors cannot be read ({first_line(exc)})") from None
        return checkpoint

    def _read_state(self, folder: Path) -> dict[str, Any]:
        probe = Checkpoint(folder, {}, {})
        try:
            state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise probe.unusable("it has no state.json") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise probe.unusable(f"state.json is damaged ({exc})") from None
        if not isinstance(state, dict) or not isinstance(state.get("params"), dict):
            raise probe.unusable("state.json does not describe a checkpoint")
        return state

    def save(
        self,
        step: int,
        model,
        optimizer,
        scheduler,
        scaler,
        ranks: list[dict[str, Any]],
        best_weights: dict[str, torch.Tensor] | None = None,
    ) -> Path:
        """Write a checkpoint for ``step`` (all at once or not at all), then drop every older one.

        ``ranks`` holds each process's own state: ``{"rng": capture_rng(), "loop": {...JSON...},
        "loop_tensors": {name: tensor}}``; model, optimizer and scheduler are the same in all.
        ``best_weights``: the weights of the best epoch so far (``train.select_best``), as ``best.safetensors``.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".partial-step-{step:07d}-", dir=self.root))
        try:
            save_model(model, str(staging / "model.safetensors"))
            optimizer_state = optimizer.state_dict()
            save_file(
                {
                    f"{index}/{name}": tensor.detach().cpu().contiguous()
                    for index, values in optimizer_state["state"].items()
                    for name, tensor in values.items()
                },
                str(staging / "optimizer.safetensors"),
            )
            tensors, json_ranks = {}, []
            for rank, own in enumerate(ranks):
                tensors.update(
                    {f"{rank}/loop/{key}": t.detach().cpu().contiguous() for key, t in own["loop_tensors"].items()}
                )
                tensors.update(
                    {f"{rank}/rng/{kind}": own["rng"][kind].cpu() for kind in ("torch", "cuda") if kind in own["rng"]}
                )
                rng = {key: value for key, value in own["rng"].items() if key not in ("torch", "cuda")}
                json_ranks.append({"loop": own["loop"], "rng": rng})
            save_file(tensors, str(staging / "tensors.safetensors"))
            files = list(_FILES)
            if best_weights is not None:
                save_file({k: t.contiguous() for k, t in best_weights.items()}, str(staging / _BEST))
                files.append(_BEST)
            state = {
                "format": FORMAT,
                "params": self.run_params,
                "ranks": json_ranks,
                "optimizer_groups": optimizer_state["param_groups"],
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "sha256": {name: _sha256(staging / name) for name in files},
            }
            for name in files:
                _fsync(staging / name)
            # state.json last: its presence says the rest is complete.
            write_json_atomic(staging / "state.json", state)
            staging.chmod(0o755)
            final = self.root / f"step-{step:07d}"
            if final.exists():
                shutil.rmtree(final)
            os.replace(staging, final)
            _fsync_folder(self.root)
        except BaseException as exc:
            shutil.rmtree(staging, ignore_errors=True)
            full = disk_full_error(exc, self.root / f"step-{step:07d}", staging) if isinstance(exc, Exception) else None
            if full is None:
                raise
            raise full from exc  # the earlier checkpoint is still there to resume from
        self._remove_all_but(final)
        return final

    def finish(self, steps: int) -> None:
        """The run is complete: its checkpoints are no longer needed, only a note that it finished."""
        self.root.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.root / "finished.json", {"steps": steps, "params": self.run_params})
        self._remove_all_but(self.root / "finished.json")

    def remove_partial(self) -> None:
        """Folders a killed run was writing when it died: never complete, never resumed from."""
        for partial in self.root.glob(".partial-step-*"):
            shutil.rmtree(partial, ignore_errors=True)

    def _remove_all_but(self, keep: Path) -> None:
        for entry in self.root.iterdir():
            if entry == keep:
                continue
            if entry.is_dir() and (_STEP_FOLDER.fullmatch(entry.name) or entry.name.startswith(".partial-step-")):
                shutil.rmtree(entry)
            elif entry.name == "finished.json":
                entry.unlink()


def _sha256(path: Path) -> str | None:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except FileNotFoundError:
        return None
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def _fsync_folder(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
