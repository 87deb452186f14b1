"""Run the real train stage and SIGKILL it at a chosen point, as a preemption or a power cut would.

    python tests/helpers/kill_train_stage.py POINT N [train stage arguments...]

POINT is where the process dies, the N-th time it gets there:
  step        before an optimizer step, its gradients computed (at the N-th gradient clipping:
              mid-epoch, the steps since the last checkpoint are lost)
  checkpoint  right after a checkpoint was saved
  validation  while validating at the end of an epoch
  checkpoint-write  while a checkpoint is half written: just before the N-th call of
              ``checkpoint.save_file``, which writes two files per checkpoint (optimizer.safetensors,
              then tensors.safetensors; model.safetensors goes through ``save_model``)
  model-save  half-way through saving the final model: its weights are in the staging folder, its
              tokenizer files not yet (N counts ``save_pretrained`` calls of a model)
"""

import os
import runpy
import signal
import sys
from pathlib import Path

import pipeline.checkpoint as checkpoint
import pipeline.training as training

point, n = sys.argv[1], int(sys.argv[2])
calls = 0


def kill_on_nth_call(function, after: bool = False):
    def wrapper(*args, **kwargs):
        global calls
        calls += 1
        if calls == n and not after:
            os.kill(os.getpid(), signal.SIGKILL)
        result = function(*args, **kwargs)
        if calls == n and after:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    return wrapper


if point == "step":
    training.clip_grad_norm_ = kill_on_nth_call(training.clip_grad_norm_)
elif point == "checkpoint":
    checkpoint.CheckpointFolder.save = kill_on_nth_call(checkpoint.CheckpointFolder.save, after=True)
elif point == "validation":
    training.predict = kill_on_nth_call(training.predict)
elif point == "checkpoint-write":
    checkpoint.save_file = kill_on_nth_call(checkpoint.save_file)
elif point == "model-save":
    from transformers import PreTrainedModel

    PreTrainedModel.save_pretrained = kill_on_nth_call(PreTrainedModel.save_pretrained, after=True)
else:
    sys.exit(f"unknown kill point {point!r}")

stage = Path(__file__).resolve().parents[2] / "stages" / "train_model.py"
sys.argv = [str(stage), *sys.argv[3:]]
runpy.run_path(str(stage), run_name="__main__")
