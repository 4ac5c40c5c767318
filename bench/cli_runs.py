"""Whole ``text2token train`` runs in fresh processes, two or more flag sets ("arms") in turn: the peak resident
memory of each run (the operating system's RSS, :mod:`bench.peak_rss`) and its training seconds per step.

Steps timed inside one process (``bench/length_groups.py``) and whole runs have disagreed on this machine
(docs/performance.md), and the C library's heap makes a run's peak memory vary from run to run, so this times
what a user runs: the command, a fresh process per run, arms in the order ``--order`` gives (A, B, ... by
position of ``--arm``; default A B B A A B), each run's own peak. An arm is command-line flags, optionally after
``VAR=value`` settings of the run's environment (an allocator, ``PYTHONPATH`` to time another checkout). Seconds per step are the stage's training
seconds over its steps (``text2token_config.json``; the first step included, model loading not). Printed:
each run, then a table per arm (peaks, median seconds per step, speed against the first arm); the last line is
JSON.

    HF_HUB_OFFLINE=1 python -m bench.cli_runs --data CORPUS.txt --steps 6 \\
        --arm "--length-groups 1" --arm "--length-groups auto"
    HF_HUB_OFFLINE=1 python -m bench.cli_runs --data CORPUS.txt --order ABBA \
        --arm "TEXT2TOKEN_ALLOCATOR=system --steps 6" --arm "TEXT2TOKEN_ALLOCATOR=auto --steps 6"
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

from bench.peak_rss import run


def settings(arm: str) -> tuple[dict[str, str], list[str]]:
    """An arm's leading ``VAR=value`` words (its environment) and the flags after them."""
    words = shlex.split(arm)
    env = {}
    while words and "=" in words[0] and not words[0].startswith("-"):
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    return env, words


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="training corpus (one text per line)")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--arm", action="append", required=True, metavar="FLAGS",
                   help="the flags of one arm, quoted (give --arm twice or more)")
    p.add_argument("--order", default="ABBAAB", help="the arms' run order, letters by position of --arm")
    p.add_argument("--common", default="", help="flags every run gets")
    p.add_argument("--log", default=None, help="folder for each run's output (default: a temporary folder)")
    args = p.parse_args(argv)
    if len(args.arm) < 2:
        p.error("give at least two --arm")
    letters = [chr(ord("A") + i) for i in range(len(args.arm))]
    if set(args.order) - set(letters) or set(letters) - set(args.order):
        p.error(f"--order must use each of {''.join(letters)} and nothing else")

    import torch

    from bench.encode_speed import cpu_name

    command = str(Path(sys.executable).with_name("text2token"))
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        logs = Path(args.log or tmp)
        logs.mkdir(parents=True, exist_ok=True)
        for i, letter in enumerate(args.order):
            flags = args.arm[letters.index(letter)]
            env, words = settings(flags)
            output = Path(tmp) / f"run{i}"
            argv_ = [command, "train", "--data", args.data, "--output", str(output), "--overwrite",
                     "--steps", str(args.steps), "--save-steps", "100000", "--logging-steps", "1",
                     *shlex.split(args.common), *words]
            with open(logs / f"run{i}-{letter}.log", "w") as out:
                measured = run(argv_, out=out, env={**os.environ, **env})
            if measured["rc"] != 0:
                raise SystemExit(f"run {i} ({flags}) failed with rc {measured['rc']}: see {logs / f'run{i}-{letter}.log'}")
            record = json.loads((output / "text2token_config.json").read_text())["training"]
            stages = record["stages"].values()
            s_per_step = sum(s["seconds"] for s in stages) / sum(s["steps"] for s in stages)
            runs.append({"arm": letter, "flags": flags, "peak_gib": round(measured["peak_gib"], 2),
                         "s_per_step": round(s_per_step, 2)})
            print(f"run {i} {letter} ({flags}): peak {measured['peak_gib']:.2f} GiB, {s_per_step:.1f} s/step",
                  flush=True)
    result = {"machine": cpu_name(), "threads": torch.get_num_threads(), "steps": args.steps,
              "common": args.common, "runs": runs, "arms": {}}
    base = statistics.median(r["s_per_step"] for r in runs if r["arm"] == "A")
    print(f"{result['machine']}, {result['threads']} thread(s), {args.steps} steps per run")
    print("| arm | peak RSS per run | s/step (median) | speed vs A |")
    print("|---|---|---:|---:|")
    for letter, flags in zip(letters, args.arm):
        mine = [r for r in runs if r["arm"] == letter]
        median = statistics.median(r["s_per_step"] for r in mine)
        result["arms"][flags] = {"peaks_gib": [r["peak_gib"] for r in mine], "s_per_step": round(median, 2),
                                 "speed": round(base / median, 3)}
        peaks = " / ".join(f"{r['peak_gib']:.2f}" for r in mine)
        print(f"| {letter} `{flags}` | {peaks} GiB | {median:.1f} | "
              f"{base / median:.2f}x |")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
