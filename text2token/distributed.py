"""What training needs from torch.distributed when it runs under ``accelerate launch`` or torchrun.

Nothing here launches or wraps processes: accelerate's ``PartialState`` starts the process group
(gloo on CPU, NCCL on GPUs) from the launcher's environment, and the transformers Trainer does
DDP/FSDP/DeepSpeed. These helpers cover the few steps *outside* the Trainer that look at the whole
corpus (stage-1 targets, the stage-2 background and teacher targets) and the run folder:

* work is cut into blocks of texts (:func:`block_ranges`; the caller picks a block size that
  does not depend on the number of processes, for example the global batch) and each rank takes
  a contiguous run of blocks, so every text is batched with the same neighbours (same padding,
  same arithmetic) whether 1 or 8 processes run;
* per-rank results are gathered in rank order (:func:`gather_lists`) or summed
  (:func:`all_reduce_sum`) with plain torch.distributed collectives;
* decisions and writes about the run folder happen on the main process only
  (:func:`on_main`; :class:`MainOnly` makes every method of an object so, as
  ``RunFolder.shared``), and their result, or their exception, reaches every rank, so a user error
  on rank 0 stops all ranks instead of leaving them waiting in a collective.

With one process every helper is a no-op.
"""

from __future__ import annotations

import logging
import os
import pickle

import torch

log = logging.getLogger(__name__)

# the largest block (one teacher batch) of stage-1/stage-2 target building
MAX_BLOCK = 256


def start() -> None:
    """Start the process group when launched with several processes (idempotent).

    The Trainer would start it too, but only when it is built; the corpus-wide steps before it
    need it earlier. accelerate picks the backend (gloo on CPU, NCCL on GPUs) as the Trainer will.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not is_initialized():
        from accelerate import PartialState

        PartialState(cpu=not torch.cuda.is_available())


def shutdown() -> None:
    """Wait for every rank, then close the process group (a no-op with one process).

    Leaving it open until interpreter exit lets gloo's threads be torn down in any order, and a
    rank can then abort ("terminate called without an active exception") after its work is done,
    which torchrun reports as a failed run.
    """
    if is_initialized():
        try:
            torch.distributed.barrier()
        finally:
            torch.distributed.destroy_process_group()


def is_initialized() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def world_size() -> int:
    return torch.distributed.get_world_size() if is_initialized() else 1


def rank() -> int:
    return torch.distributed.get_rank() if is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def local_device() -> torch.device:
    """This process's accelerator (``cuda:LOCAL_RANK``), or the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def _uses_nccl() -> bool:
    return "nccl" in str(torch.distributed.get_backend()).lower()


def _shard_blocks(count: int, block: int, num_shards: int | None, shard: int | None) -> range:
    """The numbers of this shard's blocks: a contiguous run of the ``ceil(count / block)`` blocks."""
    num_shards = world_size() if num_shards is None else num_shards
    shard = rank() if shard is None else shard
    blocks = (count + block - 1) // block
    return range(shard * blocks // num_shards, (shard + 1) * blocks // num_shards)


def block_ranges(count: int, block: int, num_shards: int | None = None,
                 shard: int | None = None) -> list[tuple[int, int]]:
    """This rank's ``(start, stop)`` blocks of ``range(count)``: a contiguous run of whole blocks."""
    return [(b * block, min((b + 1) * block, count)) for b in _shard_blocks(count, block, num_shards, shard)]


def block_span(count: int, block: int, num_shards: int | None = None, shard: int | None = None) -> tuple[int, int]:
    """The ``(start, stop)`` of this shard's blocks together (of :func:`block_ranges`): empty, at the
    place its blocks would start, when there are fewer blocks than shards."""
    numbers = _shard_blocks(count, block, num_shards, shard)
    return min(numbers.start * block, count), min(numbers.stop * block, count)


def gather_lists(items: list) -> list:
    """Every rank's list, concatenated in rank order, on every rank."""
    if not is_initialized():
        return list(items)
    parts = [None] * world_size()
    torch.distributed.all_gather_object(parts, items)
    return [x for part in parts for x in part]


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Elementwise sum over ranks (returns a new tensor on the input's device)."""
    if not is_initialized():
        return tensor
    device = tensor.device
    work = tensor.to(local_device() if _uses_nccl() else "cpu").clone()
    torch.distributed.all_reduce(work, op=torch.distributed.ReduceOp.SUM)
    return work.to(device)


def broadcast(obj=None):
    """The main process's ``obj`` on every rank."""
    if not is_initialized():
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def on_main(fn, *args, **kwargs):
    """Run ``fn`` on the main process only; every rank returns its result or raises its exception."""
    if not is_initialized():
        return fn(*args, **kwargs)
    outcome = None
    if is_main():
        try:
            outcome = ("ok", fn(*args, **kwargs))
        except Exception as exc:  # re-raised below, on every rank
            outcome = ("error", _picklable(exc))
    status, value = broadcast(outcome)
    if status == "error":
        raise value
    return value


class MainOnly:
    """``obj`` as every rank sees it: each method call runs on the main process alone (:func:`on_main`) and its
    answer, or its exception, reaches every rank. Every rank must make the same calls in the same order (each
    is a collective); plain attributes are read locally. With one process it is ``obj`` itself, in effect."""

    def __init__(self, obj):
        self._obj = obj

    def __getattr__(self, name):
        value = getattr(self._obj, name)
        if not callable(value):
            return value

        def on_main_only(*args, **kwargs):
            return on_main(value, *args, **kwargs)

        on_main_only.__name__ = on_main_only.__qualname__ = name
        on_main_only.__doc__ = value.__doc__
        return on_main_only


def _picklable(exc: Exception) -> Exception:
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def quiet_other_ranks() -> None:
    """Only the main process logs: corpus warnings and progress would otherwise repeat per rank."""
    if not is_main():
        logging.getLogger("text2token").setLevel(logging.ERROR)


def check_same_everywhere(value, what: str) -> None:
    """Fail on every rank when ranks disagree about ``value`` (for example a corpus digest)."""
    if not is_initialized():
        return
    values = [None] * world_size()
    torch.distributed.all_gather_object(values, value)
    bad = [r for r, v in enumerate(values) if v != values[0]]
    if bad:
        from .errors import DataError

        raise DataError(f"ranks {bad} see a different {what} than rank 0: every process must read the same "
                        "data (same files, same contents)")
