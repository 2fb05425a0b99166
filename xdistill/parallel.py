"""The processes of one run: ``accelerate launch`` or ``torchrun`` start ``W`` copies of xdistill
(ranks ``0..W-1``), one per GPU or, on CPUs, one per core group; this module is what they share.

The process group is :class:`accelerate.PartialState`'s (``gloo`` on CPUs, ``nccl`` on GPUs). A
single process (``python -m xdistill``) has no group and every function here is then a no-op
that returns what one process would.

Conventions of a multi-process run (issue 14):

* **One writer.** Files the others read (the run record, the teacher, cache metadata, checkpoints,
  students, reports) are written by the main process inside :func:`main_does`, which ends with
  a barrier and hands the main process's result, or its error, to every rank: a bad
  ``--resume`` or a damaged checkpoint stops every rank with the same message.
* **Shards.** Work over rows (teacher labeling, evaluation) is split into contiguous ranges of
  about equal weight (:func:`shard_range`), each rank writing or computing its own range.
* **Data parallel training.** Each rank takes every ``W``-th row of a global batch
  (:func:`local_rows`) and the gradients are summed over the ranks before the optimizer step
  (:func:`all_reduce_gradients`), as ``DistributedDataParallel`` does.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from typing import Callable, Sequence, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from accelerate import PartialState

from .errors import ConfigError, XDistillError

T = TypeVar("T")


def state() -> PartialState:
    """accelerate's process state (created on first use: gloo on a CPU-only machine, so that
    ``accelerate launch --multi_gpu`` and ``torchrun`` start real CPU process groups)."""
    return PartialState(cpu=not torch.cuda.is_available())


def launched_processes() -> int:
    """How many processes the launcher started (``WORLD_SIZE``, set by ``torchrun`` and ``accelerate
    launch`` for every rank; 1 without a launcher)."""
    world = os.environ.get("WORLD_SIZE", "1")
    return int(world) if world.isdigit() and int(world) > 0 else 1


def world_size() -> int:
    """The number of processes of the run (1 without a launcher)."""
    return state().num_processes if launched_processes() > 1 else 1


def rank() -> int:
    """This process's rank, 0 for the main process."""
    return state().process_index if launched_processes() > 1 else 0


#: accelerate's mixed-precision choices (``accelerate launch --mixed_precision`` or its config file)
MIXED_PRECISION = ("no", "fp16", "bf16")


def requested_mixed_precision() -> str:
    """The mixed precision the launch asks for: ``no``, ``fp16`` or ``bf16`` as ``accelerate launch
    --mixed_precision`` (or ``accelerate config``) sets ``ACCELERATE_MIXED_PRECISION``; ``no`` without it.

    Raises:
        ConfigError: a value accelerate may set that xdistill does not run (``fp8``) or an unknown one.
    """
    value = os.environ.get("ACCELERATE_MIXED_PRECISION", "no").strip().lower() or "no"
    if value not in MIXED_PRECISION:
        raise ConfigError(f"ACCELERATE_MIXED_PRECISION (accelerate launch --mixed_precision): expected one of "
                          f"{', '.join(MIXED_PRECISION)}, got {value!r}")
    return value


def mixed_precision() -> str:
    """The mixed precision that applies: :func:`requested_mixed_precision` on CUDA, ``no`` (float32) on
    CPUs whatever the launch says.

    Raises:
        ConfigError: as :func:`requested_mixed_precision`.
    """
    return requested_mixed_precision() if torch.cuda.is_available() else "no"


def autocast_dtype() -> torch.dtype | None:
    """The dtype :func:`autocast` computes in: ``torch.bfloat16`` or ``torch.float16``, or ``None`` (float32)."""
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed_precision())


def autocast():
    """``torch.autocast`` on CUDA with :func:`autocast_dtype` (bf16 or fp16) for inference such as the
    teacher's labeling; a context that changes nothing for float32 (and always on CPUs)."""
    dtype = autocast_dtype()
    return contextlib.nullcontext() if dtype is None else torch.autocast("cuda", dtype=dtype)


def is_main() -> bool:
    """Whether this is the main process (rank 0), the one that writes shared files."""
    return rank() == 0


def _grouped() -> bool:
    if launched_processes() == 1:
        return False
    state()  # forms the process group on first use
    return dist.is_available() and dist.is_initialized()


def shutdown() -> None:
    """Destroy this process's process group, if one was formed (nothing otherwise), before the
    interpreter exits: a gloo group left to the interpreter's teardown can abort the process
    ("terminate called without an active exception", SIGABRT) after its work is done, which the
    launcher then reports as a failed rank. Local to the process: no barrier, so a rank that stops
    on an error does not wait for the others."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every process gets here (nothing with one process)."""
    if _grouped():
        dist.barrier()


def all_gather(obj: T) -> list[T]:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` with one process."""
    if not _grouped():
        return [obj]
    out: list = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj: T) -> T:
    """The main process's ``obj`` on every rank."""
    if not _grouped():
        return obj
    box = [obj if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class RankStopped(XDistillError):
    """Raised on the other ranks when the main process stopped with an error in :func:`main_does`."""


def main_does(fn: Callable[[], T], what: str) -> T:
    """Run ``fn`` on the main process only, then hand its result (picklable) to every rank.

    Every rank must call it at the same point. When ``fn`` raises on the main process, the main
    process re-raises it and every other rank raises :class:`RankStopped` with the same message
    (an :class:`~xdistill.errors.XDistillError` keeps its class), so no rank waits for a file that
    will never come.

    Raises:
        whatever ``fn`` raises (main), RankStopped or the same XDistillError subclass (others).
    """
    if not _grouped():
        return fn()
    outcome, error = None, None
    if is_main():
        try:
            outcome = ("ok", fn())
        except BaseException as e:  # handed to the other ranks, then re-raised here
            error = e
            outcome = ("error", type(e).__name__, str(e), isinstance(e, XDistillError))
    outcome = broadcast(outcome)
    if error is not None:
        raise error
    if outcome[0] == "ok":
        return outcome[1]
    _, name, message, ours = outcome
    if not ours:
        raise RankStopped(f"the main process stopped while it {what}: {name}: {message}")
    cls = next((c for c in _error_classes() if c.__name__ == name), RankStopped)
    try:
        err = cls(message)
    except TypeError:  # an error class with other constructor arguments (DataFormatError)
        err = RankStopped(message)
    raise err


def _error_classes() -> list[type]:
    seen, todo = [], [XDistillError]
    while todo:
        c = todo.pop()
        seen.append(c)
        todo.extend(c.__subclasses__())
    return seen


def digest(value) -> str:
    """SHA-256 (16 hex digits) of ``value`` as canonical JSON."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def check_agree(values: dict[str, object], where: str) -> None:
    """Every rank must hold the same ``values`` (settings, data fingerprints): a launch whose
    processes were given other options or see other data stops at once.

    Raises:
        ConfigError: naming each entry that differs and the ranks' digests of it.
    """
    if world_size() == 1:
        return
    mine = {k: digest(v) for k, v in values.items()}
    every = all_gather(mine)
    bad = [k for k in mine if len({d.get(k) for d in every}) > 1]
    if bad:
        detail = "; ".join(f"{k}: " + ", ".join(f"rank {r} {d.get(k)}" for r, d in enumerate(every)) for k in bad)
        raise ConfigError(f"{where}: the {len(every)} processes of this launch disagree on {', '.join(bad)} ({detail}); "
                          "give every process the same options, data and files")


def split_weighted(weights: Sequence[float], parts: int) -> list[tuple[int, int]]:
    """Contiguous ranges ``[(start, end), ...]`` covering ``0..len(weights)``, one per part, of about
    equal total weight (e.g. tokens per row); a part may be empty when there are fewer rows than parts."""
    w = np.asarray(weights, dtype=np.float64)
    n = len(w)
    if parts <= 1 or n == 0:
        return [(0, n)] + [(n, n)] * max(parts - 1, 0)
    cum = np.concatenate([[0.0], np.cumsum(w)])
    cuts = [0] + [int(np.searchsorted(cum, cum[-1] * k / parts, side="left")) for k in range(1, parts)] + [n]
    cuts = list(np.maximum.accumulate(np.clip(cuts, 0, n)))
    return [(int(cuts[k]), int(cuts[k + 1])) for k in range(parts)]


def shard_range(weights: Sequence[float]) -> tuple[int, int]:
    """This rank's range of :func:`split_weighted` over the run's processes."""
    return split_weighted(weights, world_size())[rank()]


def local_rows(rows: Sequence[int]) -> list[int]:
    """This rank's part of a global batch: every ``W``-th row from position ``rank`` (all of them with
    one process)."""
    return list(rows)[rank()::world_size()]


#: gradients of matrices with at least this many rows (embeddings) are summed row-sparsely
SPARSE_ROWS = 4096


def all_reduce_gradients(params: Sequence[torch.nn.Parameter]) -> None:
    """Sum the gradients of ``params`` over the ranks (a parameter without a gradient on this rank counts
    as zeros). Each rank scales its loss by its share of the global batch beforehand, so the sum is the
    gradient of the global batch's mean loss.

    Small parameters go in one flat buffer. An embedding matrix (``(V, E)``, ``V >= SPARSE_ROWS``)
    gets gradients only in the rows of the batch's tokens: the ranks agree on the union of their
    non-zero rows (one all-reduce of ``V`` integers) and sum only those, the same result as a dense
    sum at a fraction of its traffic (a 50,000 x 300 embedding is 60 MB per step)."""
    if not _grouped() or not params:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    sparse = [p for p in params if p.dim() == 2 and p.shape[0] >= SPARSE_ROWS]
    dense = [p for p in params if not (p.dim() == 2 and p.shape[0] >= SPARSE_ROWS)]
    work = None
    if dense:
        flat = torch.cat([p.grad.reshape(-1) for p in dense])
        work = dist.all_reduce(flat, async_op=True)  # runs while the embeddings' rows are found
    # a row whose gradient is all zeros (or -0.0) adds nothing to the sum; abs-sum is the cheapest scan
    used = [(p.grad.abs().sum(dim=1) != 0).to(torch.int32) for p in sparse]
    if work is not None:
        work.wait()
        i = 0
        for p in dense:
            n = p.numel()
            p.grad = flat[i: i + n].view_as(p)  # views of one buffer: no copy
            i += n
    for p, rows_used in zip(sparse, used):
        dist.all_reduce(rows_used, op=dist.ReduceOp.MAX)
        rows = rows_used.nonzero().squeeze(1)
        part = p.grad.index_select(0, rows)
        dist.all_reduce(part)
        grad = torch.zeros_like(p)
        grad.index_copy_(0, rows, part)
        p.grad = grad


def broadcast_parameters(module: torch.nn.Module) -> None:
    """Copy the main process's parameters and buffers into every rank's ``module`` (as
    ``DistributedDataParallel`` does when it wraps a model), so all ranks start from the same state."""
    if not _grouped():
        return
    for t in module.state_dict().values():
        if torch.is_tensor(t) and t.numel():
            dist.broadcast(t, src=0)


def all_reduce_sum(values: Sequence[float]) -> list[float]:
    """Element-wise sums of ``values`` over the ranks (float64)."""
    if not _grouped():
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()
