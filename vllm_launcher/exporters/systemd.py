"""`--format systemd`: a service unit for one machine, `vllm-PRESET.service`.

vLLM 0.32 does not notify systemd when it is ready (no sd_notify), so the unit is `Type=exec` and an
`ExecStartPost` polls /health: `systemctl start` returns once the model answers, and TimeoutStartSec (sized
from the model) bounds the whole load. KillSignal=SIGINT because vLLM ignores SIGTERM during start-up;
KillMode=control-group then SIGKILLs every process left (EngineCore and workers outlive a killed API server).
"""

from __future__ import annotations

import re

from vllm_launcher.exporters import common
from vllm_launcher.exporters.options import ExportOptions
from vllm_launcher.preset.plan import build_plan
from vllm_launcher.preset.schema import Preset

RESTART_SEC_S = 10
START_LIMIT_BURST = 5
# Words that need no quoting in an Exec line (systemd.syntax(7)); `;` alone would separate commands.
_BARE = re.compile(r"[A-Za-z0-9_@+=:,./-]+")
# The C escapes systemd resolves inside quoted words (systemd.syntax(7), "Quoting").
_C_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r", "\v": "\\v", "\f": "\\f"}


def _c_escape(text: str) -> str:
    """TEXT inside a double-quoted systemd word: backslash, quote and every character that could end or hide
    a line (controls, U+0085, U+2028/9, format characters) as C escapes, so a unit line stays one line."""
    out = []
    for char in text:
        if char in _C_ESCAPES:
            out.append(_C_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        elif not char.isprintable():
            out.append(f"\\u{ord(char):04x}" if ord(char) <= 0xFFFF else f"\\U{ord(char):08x}")
        else:
            out.append(char)
    return "".join(out)


def systemd_word(word: str) -> str:
    """One word of an Exec line: `%` (specifiers) and `$` (variables) doubled; quoted with C escapes unless
    it is a plain word."""
    word = word.replace("%", "%%").replace("$", "$$")
    if _BARE.fullmatch(word):
        return word
    return '"' + _c_escape(word) + '"'


def env_assignment(name: str, value: str) -> str:
    """`"NAME=value"` for Environment=: quoted, C-escaped, specifiers (`%`) doubled; `$` is literal there."""
    return '"' + _c_escape(f"{name}={value}".replace("%", "%%")) + '"'


def exec_line(words: list[str]) -> str:
    return " ".join(systemd_word(word) for word in words)


def unit_text(value: str) -> str:
    """Free text of a setting such as Description=: specifiers doubled (the text is validated plain)."""
    return value.replace("%", "%%")


def env_file(preset: Preset, options: ExportOptions) -> str:
    return options.env_file or f"/etc/vllm-launch/{preset.name}.env"


def render(preset: Preset, options: ExportOptions) -> dict[str, str]:
    common.require_single_node(preset, "systemd")
    size = common.sizing(preset, options)
    plan = build_plan(preset, "api_server")
    unit_name = f"vllm-{preset.name}.service"
    secrets = common.secrets(preset)
    api_key = next((s for s in secrets if s.var == "VLLM_API_KEY"), None)
    env_path = env_file(preset, options)
    secret_lines = [f"{s.var}=<value of ${s.source}>" for s in secrets]
    # The check gives up after START_LIMIT_BURST failed starts within that many start-up budgets.
    start_limit_s = START_LIMIT_BURST * (size.startup_s + RESTART_SEC_S)
    curl = ["/usr/bin/curl", "--silent", "--fail", "--output", "/dev/null", "--max-time", "10",
            "--retry", "100000", "--retry-delay", "5", "--retry-connrefused", "--retry-all-errors",
            common.health_url(preset)]
    comments = common.header([
        f"vllm-launch render {preset.name} --format systemd: {common.shown(preset.model)}.",
        f"Install: copy to /etc/systemd/system/{unit_name}, write the secrets to {common.shown(env_path)}",
        "(mode 600, one NAME=value per line: " + ", ".join(secret_lines) + "), then",
        f"  systemctl daemon-reload && systemctl enable --now {unit_name}",
    ])
    lines = [
        *comments.splitlines(),
        "[Unit]",
        # The closing parenthesis also keeps a trailing backslash from continuing the line.
        f"Description=vLLM server {preset.name} ({unit_text(preset.model)})",
        "After=network-online.target",
        "Wants=network-online.target",
        f"StartLimitIntervalSec={start_limit_s}",
        f"StartLimitBurst={START_LIMIT_BURST}",
        "",
        "[Service]",
        "Type=exec",
    ]
    if options.user:
        lines.append(f"User={options.user}")
    lines.append("Environment=PYTHONUNBUFFERED=1")
    lines += [f"Environment={env_assignment(key, value)}" for key, value in plan.env.items()]
    # `-`: optional unless the API key is in it (never start an unprotected server by accident).
    lines.append(f"EnvironmentFile={'' if api_key else '-'}{unit_text(env_path)}")
    lines += [
        f"ExecStart={exec_line(plan.argv)}",
        (f"# Ready when /health answers: start-up budget {size.startup_s} s ({size.weights_source}: "
        f"{common.fmt_gib(size.weights_gib)})."),
        f"ExecStartPost={exec_line(curl)}",
        f"TimeoutStartSec={size.startup_s}",
        "Restart=on-failure",
        f"RestartSec={RESTART_SEC_S}",
        "# Back-off: the delay grows to RestartMaxDelaySec over RestartSteps restarts (systemd >= 254;",
        "# older systemd ignores these two keys and restarts every RestartSec).",
        "RestartSteps=5",
        "RestartMaxDelaySec=300",
        "KillMode=control-group",
        "KillSignal=SIGINT",
        "TimeoutStopSec=60",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return {unit_name: "\n".join(lines) + "\n"}


def gateway_unit(name: str, argv: list[str], env_file: str | None, user: str | None,
                 needs_key: bool) -> dict[str, str]:
    """A unit for the gateway alone (`vllm-launch gateway ... --render systemd`): it starts the servers it
    routes to itself, on demand. KillMode=mixed: SIGTERM to the gateway only, so that it stops its servers
    cleanly; whatever is left after TimeoutStopSec is killed with the whole control group."""
    unit_name = f"vllm-launch-{name}.service"
    env_path = env_file or f"/etc/vllm-launch/{name}.env"
    lines = [
        *common.header([f"vllm-launch gateway {name}: one OpenAI endpoint in front of its presets.",
                        f"Install: copy to /etc/systemd/system/{unit_name}, then",
                        f"  systemctl daemon-reload && systemctl enable --now {unit_name}"]).splitlines(),
        "[Unit]",
        f"Description=vllm-launch gateway {name}",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=exec",
    ]
    if user:
        lines.append(f"User={user}")
    lines.append("Environment=PYTHONUNBUFFERED=1")
    lines.append(f"EnvironmentFile={'' if needs_key else '-'}{unit_text(env_path)}")
    lines += [
        f"ExecStart={exec_line(argv)}",
        "Restart=on-failure",
        f"RestartSec={RESTART_SEC_S}",
        "KillMode=mixed",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=120",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return {unit_name: "\n".join(lines) + "\n"}
