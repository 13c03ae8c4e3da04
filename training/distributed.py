"""Data-parallel training under ``torchrun --nproc_per_node N``: the one module every trainer shares.

Every rank draws the same GLOBAL batch from (seed, step) and trains on its own contiguous part of it, so the
items of one step are split disjointly across ranks and a run's batches do not depend on the number of
processes. Items are visited in seeded per-epoch permutations (:class:`EpochStream`): within an epoch no item
is seen twice, so the ranks' items are disjoint over the epoch too. Gradients are averaged by
DistributedDataParallel; losses normalised by a batch-dependent denominator are rescaled with
:meth:`World.share` so the averaged gradient is the 1-process gradient of the global batch. Only rank 0
(``World.main``) writes checkpoints and logs. Without torchrun (``WORLD_SIZE`` unset) everything is a no-op.
"""
from __future__ import annotations

import os
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place in the job: rank, number of processes, local rank and its torch device."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    bf16: bool = False  # bf16 autocast of the forward pass (GPUs only)

    @property
    def main(self) -> bool:
        """True on the rank that writes checkpoints and logs."""
        return self.rank == 0

    def part(self, batch_size: int) -> slice:
        """Positions of the global batch this rank trains on (a contiguous block, same size on every rank)."""
        if batch_size % self.size:
            raise ValueError(f"the batch size {batch_size} must be a multiple of the {self.size} processes "
                             f"(torchrun --nproc_per_node); pass --batch-size {self.size * max(1, batch_size // self.size)}")
        n = batch_size // self.size
        return slice(self.rank * n, (self.rank + 1) * n)

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """``model`` on this rank's device, in DistributedDataParallel when there are several processes."""
        model = model.to(self.device)
        if self.size == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        sync_batchnorm(model)
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def sum(self, value: torch.Tensor | float) -> torch.Tensor:
        """The sum over ranks of a detached scalar (itself on one process)."""
        t = torch.as_tensor(value, dtype=torch.float64).detach().clone().reshape(()).to(self._comm_device)
        if self.size > 1:
            dist.all_reduce(t)
        return t.cpu()

    def mean(self, value: torch.Tensor | float) -> float:
        """The mean over ranks of a scalar (the global-batch loss from per-rank losses of equal-sized parts)."""
        return float(self.sum(value)) / self.size

    def share(self, denominator: torch.Tensor | float) -> float:
        """Factor for a loss normalised by this rank's ``denominator`` (e.g. its valid bins) so that DDP's average
        over ranks equals the loss normalised by the global denominator: size * local / global."""
        if self.size == 1:
            return 1.0
        total = float(self.sum(denominator))
        return self.size * float(denominator) / total if total > 0 else 1.0

    def gather(self, obj) -> list:
        """``obj`` of every rank, in rank order (picklable Python objects such as id lists)."""
        if self.size == 1:
            return [obj]
        out: list = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def autocast(self):
        """bf16 autocast on a GPU when asked, else nothing."""
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.bf16 else nullcontext()

    @property
    def _comm_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" and self.size > 1 else torch.device("cpu")


def setup(device: str | None = None, *, bf16: bool = False) -> World:
    """The process group of a torchrun launch (nccl on CUDA, gloo on CPU), or a single process.

    ``device``: "cpu", "cuda" (each rank takes ``cuda:LOCAL_RANK``) or an explicit device on one process."""
    name = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if bf16 and not name.startswith("cuda"):
        raise ValueError("--bf16 needs a GPU (--device cuda); on a CPU train in float32")
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World(device=torch.device(name), bf16=bf16)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if name.startswith("cuda"):
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
        backend = "nccl"
    else:
        dev, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return World(rank, size, local, dev, bf16)


def finish(world: World) -> None:
    """Leave the process group (after the last collective)."""
    if world.size > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


_LOCAL_STATS = False  # set by local_stats(): BatchNorm uses this rank's batch only


@contextmanager
def local_stats() -> Iterator[None]:
    """Forward passes run by one rank alone (e.g. rank 0's BatchNorm calibration) must not wait for the others."""
    global _LOCAL_STATS
    old, _LOCAL_STATS = _LOCAL_STATS, True
    try:
        yield
    finally:
        _LOCAL_STATS = old


class SyncedBatchNorm(torch.nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch: per-channel sums, sums of squares and
    counts are all-reduced (with gradients, ``torch.distributed.nn``) on any backend, gloo included (torch's
    SyncBatchNorm needs a GPU). So N ranks normalise exactly as one process with the whole batch would."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and not _LOCAL_STATS and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        c, dims = x.shape[1], [0] + list(range(2, x.dim()))
        xf = x.float()
        stats = torch.cat([xf.sum(dims), (xf * xf).sum(dims), xf.new_full((1,), xf.numel() // c)])
        stats = all_reduce(stats)
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp_min(0.0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), m)
                unbiased = var.detach() * n / (n - 1).clamp_min(1.0)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), m)
        shape = [1, c] + [1] * (x.dim() - 2)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def sync_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """Turn every BatchNorm of ``model`` into a :class:`SyncedBatchNorm` in place, keeping the same parameter and
    buffer tensors (an optimiser built on the model keeps working)."""
    for name, child in list(model.named_children()):
        if isinstance(child, torch.nn.modules.batchnorm._BatchNorm) and not isinstance(child, SyncedBatchNorm):
            new = SyncedBatchNorm(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats)
            for key, t in list(child._parameters.items()):
                new._parameters[key] = t
            for key, t in list(child._buffers.items()):
                new._buffers[key] = t
            new.train(child.training)
            setattr(model, name, new)
        else:
            sync_batchnorm(child)
    return model


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside a DistributedDataParallel wrapper (for saving and single-rank passes)."""
    return getattr(model, "module", model)


class EpochStream:
    """An endless stream of item indices: epoch e is ``default_rng([seed, salt, e]).permutation(n)``.

    ``take(start, count)`` returns stream positions ``start .. start+count-1``; a trainer takes
    ``[step * B, (step + 1) * B)`` so batches are a pure function of (seed, step) and resuming replays them."""

    def __init__(self, n: int, seed: int, salt: int = 0):
        if n < 1:
            raise ValueError("no items to sample from")
        self.n, self.seed, self.salt = n, seed, salt
        self._cache: dict[int, np.ndarray] = {}

    def _epoch(self, e: int) -> np.ndarray:
        if e not in self._cache:
            if len(self._cache) > 4:
                self._cache.clear()
            self._cache[e] = np.random.default_rng([self.seed, self.salt, e]).permutation(self.n)
        return self._cache[e]

    def take(self, start: int, count: int) -> np.ndarray:
        pos = np.arange(start, start + count)
        return np.array([self._epoch(int(p) // self.n)[int(p) % self.n] for p in pos], dtype=np.int64)
