"""Test-only runner: the ``text2token`` command line, SIGKILLed at a chosen point.

    python tests/crash_runner.py SPEC [text2token arguments ...]

SPEC says where the process kills itself (``kill -9``, no cleanup, no ``finally``):

* ``loss:N``   while computing the N-th training loss (counted over both stages), that is in
  the middle of an optimizer step;
* ``state:N``  while writing ``trainer_state.json`` of ``checkpoint-N``: half of the file is on
  disk (the adapter, optimizer and RNG state are already written), the rest never comes.

Nothing in the library knows about this: the runner monkeypatches the library before it starts.
"""

from __future__ import annotations

import os
import signal
import sys


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _crash_at_loss(n: int) -> None:
    import text2token.objective as objective

    real, calls = objective.kl_loss, [0]

    def kl_loss(*args, **kwargs):
        calls[0] += 1
        if calls[0] == n:
            _die()
        return real(*args, **kwargs)

    objective.kl_loss = kl_loss


def _crash_in_trainer_state(step: int) -> None:
    from transformers.trainer_callback import TrainerState

    real = TrainerState.save_to_json

    def save_to_json(self, json_path):
        real(self, json_path)
        if os.path.basename(os.path.dirname(json_path)) == f"checkpoint-{step}":
            with open(json_path, "r+b") as f:
                f.truncate(os.path.getsize(json_path) // 2)
                f.flush()
                os.fsync(f.fileno())
            _die()

    TrainerState.save_to_json = save_to_json


def main() -> int:
    import torch

    torch.set_num_threads(1)  # as the test process: same arithmetic, and no fight over 2 cores
    spec, argv = sys.argv[1], sys.argv[2:]
    kind, _, value = spec.partition(":")
    {"loss": _crash_at_loss, "state": _crash_in_trainer_state}[kind](int(value))
    from text2token.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
