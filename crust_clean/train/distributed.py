"""Several processes, one run: ``torchrun --nproc-per-node N -m crust_clean fit ...`` (or ``fit --nproc N``,
which ``launch`` starts with torchrun's environment contract).

On cached features (``--train head`` / ``last-stages``) the ranks share the feature pass (each its eval batches,
``train.features``) into one cache entry and rank 0 trains alone; what follows is about ``--train all``.

What each rank does, and why the result matches a single-process run:
- every rank reads the same samples, makes the same split and the same initial model (same seed);
- the eval pass is sharded (the single process's batches dealt out to the ranks) and the logits are
  gathered, so every rank holds all of them; rank 0 selects the coreset and broadcasts it;
- training draws the single-process batch order (same seed) and splits every batch across the ranks; each rank's
  loss is its part of the batch's sum divided by the batch size, so DDP's gradient average is the batch mean;
- rank 0 alone writes files (ledger, metrics, checkpoints, model).

What differs: float rounding in training (a rank's part of a batch runs as its own smaller batch, and the
gradients are summed in another order), so the weights drift apart at about 1e-7 relative. The warm-up and the
first coreset epoch match a single process to that precision; later a near-tie (a row about equally far from
two medoids, two rows about equally central) can go the other way, a cluster weight changes, and the runs
drift apart slowly (tests/test_distributed.py: after 4 epochs the coresets still agree on over 90 % of the
rows); BatchNorm statistics are per rank (a batch's part, not the batch) unless the run is on CUDA, where
BatchNorm becomes SyncBatchNorm; random augmentation draws its own stream per rank; an epoch with fewer
samples than ranks trains nothing (a last batch under 16 rows joins the one before, see ``batch_plan``).
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ContextManager, Iterator

import numpy as np


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


SINGLE = Ranks()


def torchrun_ranks() -> Ranks:
    """The ranks torchrun's environment describes (WORLD_SIZE, RANK, LOCAL_RANK), without joining any process
    group: ``SINGLE`` in a plain process. Cheap (no torch import): the CLI asks it who speaks for the run."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    return Ranks(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def from_environment(device: str) -> Ranks:
    """``torchrun_ranks``, joining the process group once (NCCL when the run uses CUDA, gloo on CPU)."""
    ranks = torchrun_ranks()
    if not ranks.active:
        return SINGLE
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        uses_cuda = device != "cpu" and torch.cuda.is_available()
        dist.init_process_group("nccl" if uses_cuda else "gloo")
    return Ranks(dist.get_rank(), dist.get_world_size(), ranks.local_rank)


def launch(nproc: int, args: list[str]) -> int:
    """Run ``python -m crust_clean ARGS`` as ``nproc`` processes with torchrun's environment (RANK, WORLD_SIZE,
    LOCAL_RANK, MASTER_ADDR/PORT), as ``torchrun --standalone`` would, but keeping the ranks' one-line errors and
    exit status; returns the exit status. When one rank fails the others get a few seconds to stop on their own
    (a bad input stops them all), then are terminated (they would wait for it forever)."""
    import socket
    import subprocess
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ranks = [subprocess.Popen([sys.executable, "-m", "crust_clean", *args], env={
        **os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(nproc),
        "RANK": str(rank), "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(nproc)}) for rank in range(nproc)]
    try:
        while all(p.poll() is None or p.returncode == 0 for p in ranks):
            if all(p.poll() is not None for p in ranks):
                return 0
            time.sleep(0.2)
        deadline = time.monotonic() + 5
        while any(p.poll() is None for p in ranks) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        for p in ranks:
            if p.poll() is None:
                p.terminate()
        for p in ranks:
            p.wait()
    codes = [p.returncode for p in ranks]
    return next((c for c in codes if c > 0), 1)


def eval_shards(n: int, batch_size: int, world: int) -> list[np.ndarray]:
    """Each rank's rows of an eval pass over ``range(n)``: the single process's batches of ``batch_size``
    dealt out in turn (batch b to rank b mod world). Every batch is then computed exactly as one process
    computes it (a convolution's rounding can depend on the batch it runs in)."""
    starts = range(0, n, batch_size)
    return [np.concatenate([np.arange(s, min(s + batch_size, n)) for s in starts[r::world]] or
                           [np.zeros(0, dtype=np.int64)]).astype(np.int64) for r in range(world)]


def gather_rows(part, shards: list[np.ndarray] | None, ranks: Ranks):
    """Every rank's ``part`` (a tensor of its rows ``shards[rank]``) put together in row order: the (n, ...)
    tensor one process computes, on every rank."""
    if not ranks.active:
        return part
    import torch
    import torch.distributed as dist

    longest = max(len(s) for s in shards)
    padded = torch.zeros((longest, *part.shape[1:]), dtype=part.dtype, device=part.device)
    padded[:len(part)] = part
    parts = [torch.empty_like(padded) for _ in range(ranks.world)]
    dist.all_gather(parts, padded)
    rows = torch.as_tensor(np.concatenate(shards), device=part.device)
    out = torch.empty((len(rows), *part.shape[1:]), dtype=part.dtype, device=part.device)
    out[rows] = torch.cat([p[:len(s)] for p, s in zip(parts, shards)])
    return out


def broadcast(value, ranks: Ranks):
    """Rank 0's ``value`` on every rank (any picklable object)."""
    if not ranks.active:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@contextmanager
def staged_on_main(staging: ContextManager[Path], ranks: Ranks) -> Iterator[Path]:
    """Enter ``staging`` (a context manager yielding a path to build in, ``atomic.atomic_path`` or
    ``atomic.staged_folder``) on rank 0 alone and yield its path on every rank: all ranks write into it, rank 0 puts
    it in place. The others must be done with it when the block ends on rank 0 (end the block with a collective)."""
    if not ranks.is_main:
        yield broadcast(None, ranks)
        return
    with staging as path:
        broadcast(path, ranks)
        yield path


def gather_objects(value, ranks: Ranks) -> list:
    """Every rank's ``value`` (any picklable object), in rank order, on every rank; ``[value]`` in one process."""
    if not ranks.active:
        return [value]
    import torch.distributed as dist

    out = [None] * ranks.world
    dist.all_gather_object(out, value)
    return out


def barrier(ranks: Ranks) -> None:
    if ranks.active:
        import torch.distributed as dist

        dist.barrier()


def leave_group(ranks: Ranks) -> None:
    """Every rank here, then the process group ends: what follows runs in each process on its own."""
    if ranks.active:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()


SMALLEST_LAST_BATCH = 16


def batch_plan(n: int, batch_size: int, seed: int, ranks: Ranks) -> tuple[list[np.ndarray], list[int]]:
    """This rank's index batches for one epoch and the size of each whole batch.

    The order is one permutation of ``range(n)`` drawn from ``seed``, cut into batches of ``batch_size``:
    the same for any number of ranks; rank r takes the r-th of ``world`` near-equal parts of every batch.
    A last batch of fewer than ``SMALLEST_LAST_BATCH`` rows joins the one before (whatever the number of ranks,
    so the order stays that of one process): BatchNorm cannot train on one sample when the features end at
    1 x 1 (a coreset of 129 rows in batches of 128 did that), and up to 8 ranks get at least two each.
    """
    import torch

    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] < SMALLEST_LAST_BATCH:
        starts.pop()
    mine, sizes = [], []
    for start, end in zip(starts, starts[1:] + [n]):
        batch = order[start:end]
        if len(batch) < ranks.world:  # a rank without samples would stall the others' gradient exchange
            continue
        mine.append(np.array_split(batch, ranks.world)[ranks.rank])
        sizes.append(len(batch))
    return mine, sizes
