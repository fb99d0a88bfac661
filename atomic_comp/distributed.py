"""Data-parallel jobs: one process per GPU (or CPU worker), from torchrun's or SLURM's environment.

Under SLURM, submitit starts `tasks_per_node` tasks per node and `init()` exports the
rendezvous from SLURM's variables (submitit's TorchDistributedEnvironment); under torchrun
the variables are already set. accelerate (inside the TRL trainers) then uses this process
group. No distributed code of our own beyond these few decisions: who writes, and when to wait.
"""

from __future__ import annotations

import os

import torch


def init(device: str) -> None:
    if "RANK" not in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        import submitit

        submitit.helpers.TorchDistributedEnvironment().export()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if device == "cuda" else "gloo")


def world_size() -> int:
    return torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1


def rank() -> int:
    return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0


def barrier() -> None:
    if world_size() > 1:
        torch.distributed.barrier()


def broadcast(value):
    """Rank 0's value on every rank."""
    if world_size() == 1:
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]
