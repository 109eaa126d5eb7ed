"""How long `estimate` takes from a cold interpreter (imports included) and warm, for the largest fixture
(gpt-oss-120b: MoE, MXFP4, sliding window) and a dense model. Prints seconds measured in this run.

    python bench/bench_estimate.py
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "tests" / "fixtures" / "configs"
COLD = ("import time; t = time.perf_counter();"
        "from vllm_launcher.memory.estimate import estimate; from vllm_launcher.memory.arch import load_arch;"
        "from vllm_launcher.preset.schema import Preset; "
        "from vllm_launcher.machine.hardware import hypothetical;"
        "a = load_arch({model!r});"
        "estimate(Preset(name='t', model='m', max_model_len=32768), a, hypothetical('cuda', 8, 79.19));"
        "print(time.perf_counter() - t)")


def main() -> None:
    from vllm_launcher.machine.hardware import hypothetical
    from vllm_launcher.memory.arch import load_arch
    from vllm_launcher.memory.estimate import estimate
    from vllm_launcher.preset.schema import Preset

    for name in ("gpt-oss-120b", "Qwen2.5-7B-Instruct", "DeepSeek-Coder-V2-Lite-Instruct"):
        path = str(CONFIGS / name)
        argv = [sys.executable, "-c", COLD.format(model=path)]
        cold = sorted(float(subprocess.run(argv, capture_output=True, text=True, check=True, cwd=REPO).stdout)
                      for _ in range(5))
        arch = load_arch(path)
        hw = hypothetical("cuda", 8, 79.19)
        started = time.perf_counter()
        for _ in range(100):
            estimate(Preset(name="t", model="m", max_model_len=32768), arch, hw)
        warm = (time.perf_counter() - started) / 100
        print(f"{name}: cold (imports + config + estimate) median {cold[2] * 1000:.0f} ms, "
              f"warm estimate {warm * 1000:.2f} ms (budget 500 ms: {cold[2] / 0.5:.0%} of it)")


if __name__ == "__main__":
    main()
