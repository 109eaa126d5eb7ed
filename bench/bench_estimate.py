"""Time `vllm-launch estimate` on presets against a bare `import typer, pydantic, yaml` (medians, ratios).

    /work/venv-probe/bin/python bench/bench_estimate.py [RUNS]

Prints the median wall time of each command over RUNS runs (default 15) and its ratio to the bare imports,
which is the floor any typer CLI pays. No assertions: timings vary by machine.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

PY = sys.executable
CLI = shutil.which("vllm-launch", path=str(Path(PY).parent)) or "vllm-launch"
HARDWARE = str(Path(__file__).parent.parent / "tests" / "fixtures" / "hardware" / "cpu-2core-24gib.json")

COMMANDS = {
    "baseline: import typer, pydantic, yaml": [PY, "-c", "import typer, pydantic, yaml"],
    "estimate cpu-16k --json": [CLI, "estimate", "cpu-16k", "--json"],
    "estimate gpu-7b (hypothetical H100)": [CLI, "estimate", "gpu-7b", "--gpus", "1",
                                            "--gpu-mem-gib", "79.19"],
    "estimate cpu-test --hardware FILE": [CLI, "estimate", "cpu-test", "--hardware", HARDWARE],
    "probe --json": [CLI, "probe", "--json"],
}


def median_s(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    results = {name: median_s(argv, runs) for name, argv in COMMANDS.items()}
    base = next(iter(results.values()))
    for name, seconds in results.items():
        print(f"{name:45s} {seconds * 1000:7.1f} ms  x{seconds / base:.2f}")


if __name__ == "__main__":
    main()
