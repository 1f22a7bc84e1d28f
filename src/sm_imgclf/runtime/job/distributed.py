"""Data-parallel training across hosts (or processes) with torch.distributed."""

from __future__ import annotations

import os

from sm_imgclf.runtime.job.contract import JobEnvironment

PORT = "29500"


def setup(env: JobEnvironment) -> tuple[int, int] | None:
    """Join the process group when there are several hosts or torchrun processes.

    Returns ``(rank, world_size)``, or ``None`` for a single process. Gloo is
    used on CPU, NCCL on GPU; the first host is the rendezvous point.
    """
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "0"))
    if world > 1:  # started by torchrun, which sets RANK and MASTER_ADDR
        rank = int(os.environ["RANK"])
    elif len(env.hosts) > 1:
        world, rank = len(env.hosts), env.hosts.index(env.current_host)
        os.environ.setdefault("MASTER_ADDR", env.hosts[0])
        os.environ.setdefault("MASTER_PORT", PORT)
    else:
        return None
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, rank=rank, world_size=world)
    print(f"distributed: rank {rank} of {world} ({backend})", flush=True)
    return rank, world


def teardown() -> None:
    """Leave the process group, if one was joined, once every rank got here."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        barrier()
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every process of the job got here."""
    import torch
    import torch.distributed as dist

    if dist.get_backend() == "nccl":  # its barrier runs on a GPU: this process's own
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()
