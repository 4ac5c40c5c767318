"""Run a command and report its peak resident memory (with its child processes), sampled every 0.2 s.

Each output line of the command is printed with the time, the RSS then and the peak so far, so the
phase that peaks can be read off; the last line is the peak. Linux only (/proc).

    python -m bench.peak_rss text2token demo --output /tmp/demo --overwrite   # or: python bench/peak_rss.py ...
"""
import subprocess
import sys
import threading
import time


def rss(pid: int) -> int:
    """Resident memory of ``pid`` and its children, kB."""
    total = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = f.read().split()
        for k in kids:
            total += rss(int(k))
    except OSError:
        pass
    return total


def run(argv: list[str], out=sys.stdout, env=None) -> dict:
    """Run ``argv``, writing each output line to ``out`` with the time and RSS; returns ``peak_gib``, the
    time it was reached (``peak_at``, s), ``rc`` and ``seconds``."""
    start = time.time()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env)
    peak, cur = [0, 0.0], [0]

    def poll():
        while p.poll() is None:
            r = rss(p.pid)
            cur[0] = r
            if r > peak[0]:
                peak[:] = [r, time.time() - start]
            time.sleep(0.2)

    threading.Thread(target=poll, daemon=True).start()
    for line in p.stdout:
        print(f"[{time.time()-start:7.1f}s rss {cur[0]/2**20:5.2f} GiB peak {peak[0]/2**20:5.2f}] {line.rstrip()}",
              file=out, flush=True)
    p.wait()
    return {"peak_gib": peak[0] / 2**20, "peak_at": peak[1], "rc": p.returncode, "seconds": time.time() - start}


def main(argv: list[str]) -> int:
    result = run(argv)
    print(f"PEAK {result['peak_gib']:.2f} GiB at {result['peak_at']:.1f}s; rc {result['rc']}; "
          f"{result['seconds']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
