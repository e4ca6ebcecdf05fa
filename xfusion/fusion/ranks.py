"""Fusion over several processes: which rank fuses which time steps, and how the ranks meet.

``torchrun --nproc_per_node=N -m xfusion fuse ...`` (and ``--nnodes`` with torchrun's rendezvous) starts the same
command N times; each finds its rank in torchrun's environment (``Ranks.from_env``): gloo on CPUs, NCCL on GPUs,
one GPU per local rank. A recording is cut at its key frames into segments (``KeySchedule.segments``), which are
independent for a segment network and give the same frames in any grouping for a window network (each time step
is its own window); each rank takes a contiguous share of the segments still to do, of about equal frame counts
(``share_segments``). Run as one process, every function here is the trivial case.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

TIMEOUT = datetime.timedelta(hours=2)  # a rank waits this long for the others (a long segment on a slow CPU)


@dataclass(frozen=True)
class Ranks:
    """This process's place among the processes of one run: ``rank`` of ``world``, ``local_rank`` on its node."""
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls, device: str) -> Ranks:
        """The ranks torchrun gives (one process when not started by torchrun); joins the process group."""
        world = int(os.environ.get('WORLD_SIZE', '1'))
        if world == 1:
            return cls()
        ranks = cls(int(os.environ['RANK']), world, int(os.environ.get('LOCAL_RANK', '0')))
        if not dist.is_initialized():
            cuda = device.startswith('cuda')
            if cuda:
                torch.cuda.set_device(ranks.local_rank)
            dist.init_process_group('nccl' if cuda else 'gloo', timeout=TIMEOUT)
        return ranks

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, device: str) -> str:
        """The device this rank computes on: ``cuda`` becomes this rank's own GPU."""
        return f'cuda:{self.local_rank}' if self.world > 1 and device == 'cuda' else device

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def gather(self, value) -> list:
        """Every rank's ``value``, in rank order, on every rank."""
        if self.world == 1:
            return [value]
        values = [None] * self.world
        dist.all_gather_object(values, value)
        return values

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def share_segments(segments: list[tuple[int, int]], world: int) -> list[list[tuple[int, int]]]:
    """Contiguous shares of ``segments`` for ``world`` ranks, of about equal frame counts (rank 0 the earliest).

    A segment is never split; a rank may get none when there are fewer segments than ranks."""
    total = sum(stop - start for start, stop in segments)
    shares: list[list[tuple[int, int]]] = [[] for _ in range(world)]
    done = 0
    for segment in segments:
        middle = done + (segment[1] - segment[0]) / 2  # a segment goes to the rank whose share holds its middle
        shares[min(int(middle * world / max(total, 1)), world - 1)].append(segment)
        done += segment[1] - segment[0]
    return shares
