"""Where training runs: the device, and data parallelism across processes with ``torch.distributed``.

One process is the default. With ``train.processes > 1`` the train stage relaunches itself under
``torchrun`` (``torch.distributed.run``), which starts one worker per process and gives each its rank
in environment variables; on several machines, start the stage under ``torchrun`` yourself (see
README) and it uses the ranks it is given. Workers talk over gloo on CPU and NCCL on GPUs.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from pipeline.errors import PipelineError


def pick_device(preference: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto``: the GPU if there is one, else the CPU. Each process on a machine gets its own GPU."""
    if preference == "cuda" and not torch.cuda.is_available():
        raise PipelineError("train.device=cuda but no CUDA GPU is visible (use train.device=auto or cpu)")
    if preference == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def usable_cpu_cores() -> int:
    """The cores this process may run on (a container or ``taskset`` can allow fewer than the machine has)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# The CPU threads each stage process computes with. `dvc queue start -j N` runs N experiments at
# once; each given cores/N threads, they share the cores instead of fighting over them (docs/scaling.md).
THREADS_VARIABLE = "PIPELINE_CPU_THREADS"


def limit_cpu_threads() -> int:
    """Apply ``PIPELINE_CPU_THREADS`` to torch's CPU threads when it is set; return the threads in use."""
    value = os.environ.get(THREADS_VARIABLE, "").strip()
    if not value:
        return torch.get_num_threads()
    cores = usable_cpu_cores()
    if not value.isdigit() or not 1 <= int(value) <= cores:
        raise PipelineError(
            f"{THREADS_VARIABLE}={value!r}: give a whole number of threads from 1 to {cores}, "
            f"the CPU cores this process may use (or unset it to use them all)"
        )
    torch.set_num_threads(int(value))
    return int(value)


def check_processes(processes: int, device_preference: str) -> None:
    """Refuse more data-parallel processes than there are GPUs (on CUDA) or CPU cores, before any starts.

    Each process holds a whole copy of the model and of AdamW's state, so processes beyond the cores
    only share the same cores and multiply the memory.
    """
    if processes == 1:
        return
    if device_preference != "cpu" and torch.cuda.is_available():
        gpus = torch.cuda.device_count()
        if processes > gpus:
            raise PipelineError(
                f"train.processes={processes} but {gpus} CUDA GPU(s) are visible: one process per GPU "
                f"(set train.processes to at most {gpus})"
            )
        return
    cores = usable_cpu_cores()
    if processes > cores:
        raise PipelineError(
            f"train.processes={processes} but this machine has {cores} CPU cores for them: each process needs "
            f"at least one, and each holds its own copy of the model (set train.processes to at most {cores})"
        )


def launched_by_torchrun() -> bool:
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def relaunch_with_torchrun(processes: int) -> None:
    """Run this very command again as ``processes`` workers on this machine, through ``torchrun``."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    # --standalone: a rendezvous on a free local port, so runs side by side never collide.
    argv = ["--standalone", f"--nproc-per-node={processes}", sys.argv[0], *sys.argv[1:]]
    try:
        torchrun(argv)
    except ChildFailedError:
        raise PipelineError(
            f"a training process failed (its error is printed above); {processes} were started "
            f"by torchrun because train.processes={processes}"
        ) from None


@dataclass(frozen=True)
class ProcessGroup:
    """This process's place among the data-parallel workers (rank 0 of 1 when not distributed)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes files, logs and prints, so every side effect happens once."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def all_gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.distributed:
            return [obj]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """The mean of ``tensor`` over all ranks (``tensor`` itself when alone)."""
        if not self.distributed:
            return tensor
        total = tensor.detach().clone()
        dist.all_reduce(total)
        return total / self.world_size

    def print(self, message: str) -> None:
        """A line on stderr from rank 0 alone."""
        if self.is_main:
            print(message, file=sys.stderr, flush=True)

    def progress_bar(self, iterable, **tqdm_args):
        """A progress bar on rank 0's stderr; redrawn every minute when stderr is a log file, not a terminal."""
        return tqdm(
            iterable,
            file=sys.stderr,
            disable=not self.is_main,
            dynamic_ncols=True,
            mininterval=0.5 if sys.stderr.isatty() else 60,
            **tqdm_args,
        )

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """What trains: the model itself, or with several processes its DistributedDataParallel wrapper,
        which averages the gradients across processes during ``backward``, so every copy stays identical."""
        return DistributedDataParallel(model) if self.distributed else model

    def accumulating(self, trained: torch.nn.Module, last: bool) -> contextlib.AbstractContextManager:
        """Around one micro-batch's forward and backward: gradients are averaged across processes once
        per optimizer step, on its ``last`` micro-batch, and only added up locally before it."""
        if last or not isinstance(trained, DistributedDataParallel):
            return contextlib.nullcontext()
        return trained.no_sync()


def join(device_preference: str) -> ProcessGroup:
    """Join the process group torchrun set up, or stand alone; pick this process's device and CPU threads."""
    limit_cpu_threads()
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return ProcessGroup(device=pick_device(device_preference))
    return join_group(device_preference)


def join_group(device_preference: str) -> ProcessGroup:
    """Join torchrun's process group on this worker's device: NCCL on a GPU, gloo on the CPU.

    ``join`` calls this only for two or more processes (a group of one only adds work);
    benchmarks/gpu_smoke.py calls it for one, to run the collectives on a single GPU.
    """
    local_rank = int(os.environ["LOCAL_RANK"])
    device = pick_device(device_preference, local_rank)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if cuda else "gloo", device_id=device if cuda else None)
    return ProcessGroup(rank=dist.get_rank(), local_rank=local_rank, world_size=dist.get_world_size(), device=device)


def leave(group: ProcessGroup) -> None:
    if group.distributed and dist.is_initialized():
        dist.destroy_process_group()
