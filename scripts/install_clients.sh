#!/usr/bin/env bash
# Install the real coding-agent CLIs that tests/test_launch_clients.py runs (`launch` hands them a model):
# Codex, opencode and Claude Code from npm, aider from PyPI in its own venv (its pins clash with ours).
# Usage: scripts/install_clients.sh [DIR]   (default: .clients, ignored by git; the tests look there, or in
# $VLLM_LAUNCH_CLIENTS). Already installed at these versions: nothing to do. Needs node/npm and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-.clients}"
CODEX=0.171.0 OPENCODE=1.18.33 CLAUDE=2.1.197 AIDER=0.86.2
have() { [ -x "$1" ] && "$1" --version 2>/dev/null | grep -q "$2"; }
bin="$dir/npm/node_modules/.bin"
if ! { have "$bin/codex" "$CODEX" && have "$bin/opencode" "$OPENCODE" && have "$bin/claude" "$CLAUDE"; }; then
  command -v npm >/dev/null || { echo "install_clients: npm is needed (apt-get install nodejs npm)" >&2; exit 1; }
  # npm runs the postinstall scripts that link the platform's native claude and opencode binaries.
  npm install --prefix "$dir/npm" --no-audit --no-fund --loglevel=error \
    "@openai/codex@$CODEX" "opencode-ai@$OPENCODE" "@anthropic-ai/claude-code@$CLAUDE"
fi
if ! have "$dir/aider/bin/aider" "$AIDER"; then
  python3 -m venv "$dir/aider"
  "$dir/aider/bin/python" -m pip install --quiet --disable-pip-version-check "aider-chat==$AIDER"
fi
for tool in "$bin/codex" "$bin/opencode" "$bin/claude" "$dir/aider/bin/aider"; do
  printf '%s: %s\n' "$(basename "$tool")" "$("$tool" --version 2>&1 | tail -n 1)"
done
