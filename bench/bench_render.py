"""Time `vllm-launch render gpu-7b --format json` against Python's own start-up and the dependency floor.

Prints medians of several runs, all measured in this one run, and the ratios. `render` is timed warm
(the plan cache holds the validated plan, the usual case when a preset is rendered again) and cold
(an empty cache directory each time: YAML + pydantic validation).

    python bench/bench_render.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = str(Path(sys.executable).parent / "vllm-launch")


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def median_s(argv: list[str], runs: int, fresh_cache: bool = False) -> float:
    samples = []
    for _ in range(runs):
        env = dict(os.environ)
        with tempfile.TemporaryDirectory() as cache:
            if fresh_cache:
                env["XDG_CACHE_HOME"] = cache
            samples.append(timed(argv, env))
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    render = [CLI, "render", "gpu-7b", "--format", "json"]
    subprocess.run(render, stdout=subprocess.DEVNULL, check=True)  # warm the OS page cache and plan cache
    python_s = median_s([sys.executable, "-c", "pass"], runs)
    floor_s = median_s([sys.executable, "-c", "import typer, pydantic, yaml"], runs)
    warm_s = median_s(render, runs)
    cold_s = median_s(render, runs, fresh_cache=True)
    print(f"runs per case: {runs} (medians)")
    print(f"python -c pass                      {python_s * 1000:7.1f} ms")
    print(f"python -c 'import typer, pydantic, yaml' (floor) {floor_s * 1000:7.1f} ms")
    print(f"render gpu-7b --format json (warm)  {warm_s * 1000:7.1f} ms  = {warm_s / floor_s:.2f}x floor, "
          f"{warm_s / python_s:.2f}x python")
    print(f"render gpu-7b --format json (cold)  {cold_s * 1000:7.1f} ms  = {cold_s / floor_s:.2f}x floor, "
          f"{cold_s / python_s:.2f}x python")


if __name__ == "__main__":
    main()
