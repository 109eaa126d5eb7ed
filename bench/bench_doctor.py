"""Time `vllm-launch doctor` over every built-in preset (no server running) and show what it imports.

    /work/venv-probe/bin/python bench/bench_doctor.py [--runs N]

Prints the median wall time of the whole command (a fresh interpreter each run), its ratio to the 1 s
budget and to `vllm-launch --help`, and whether torch / vllm / transformers were imported (they must not).
No assertions: timings are machine-dependent, tests check behaviour.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

IMPORTS = """
import sys
from vllm_launcher.cli import main
try:
    main(["doctor", "--json"])
except SystemExit:
    pass
print("HEAVY=" + ",".join(m for m in ("torch", "vllm", "transformers", "httpx", "rich") if m in sys.modules),
      file=sys.stderr)
"""


def wall_s(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(args, env=env, capture_output=True, check=False)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, **{v: os.path.join(home, v) for v in ("XDG_CONFIG_HOME", "XDG_STATE_HOME",
                                                                   "XDG_CACHE_HOME")}}
        cli = [sys.executable, "-m", "vllm_launcher"]
        doctor = statistics.median(wall_s([*cli, "doctor"], env) for _ in range(runs))
        help_s = statistics.median(wall_s([*cli, "--help"], env) for _ in range(runs))
        listing = statistics.median(wall_s([*cli, "doctor", "--list"], env) for _ in range(runs))
        heavy = subprocess.run([sys.executable, "-c", IMPORTS], env=env, capture_output=True, text=True,
                               check=False).stderr.strip().splitlines()[-1]
    print(f"doctor (all presets + environment): {doctor:.3f} s median of {runs}  "
          f"({doctor / 1.0:.2f}x the 1 s budget)")
    print(f"doctor --list:                      {listing:.3f} s")
    print(f"vllm-launch --help:                 {help_s:.3f} s  (doctor / help = {doctor / help_s:.2f}x)")
    print(f"heavy modules imported by doctor:   {heavy.removeprefix('HEAVY=') or 'none'}")


if __name__ == "__main__":
    main()
