"""Every option and argument of the CLI, declared once, as data.

From these `Param`s the typer app (cli.app) builds each command's signature and help, and the stdlib fast
path (cli.fastpath) builds its argparse parser, so nothing is declared twice. Stdlib only: the fast path
imports this module on every `render`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vllm_launcher.base.errors import ConfigError

if TYPE_CHECKING:
    from vllm_launcher.preset.schema import Override

from vllm_launcher.base.inputs import RESTART_MODES
from vllm_launcher.commands.presets import ENTRYPOINTS, RENDER_FORMATS

# Help sections of the long option lists.
OVERRIDES_PANEL = "Overrides"
EXPORT_PANEL = "Deployment formats"


@dataclass(frozen=True)
class Param:
    """One CLI parameter. No FLAGS: a positional argument. The command body receives it as keyword DEST,
    except a GROUP's members, which it receives gathered (`overrides`, `export_values`)."""

    dest: str
    flags: tuple[str, ...] = ()
    kind: type = str  # str, int, float or bool (a flag)
    help: str = ""
    default: Any = None
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    many: bool = False  # a repeatable option, or a variadic argument
    required: bool = False  # arguments only
    panel: str | None = None
    group: str | None = None  # "overrides" | "export"
    hidden: bool = False  # used by vllm-launch itself (the detached gateway), not shown in --help

    @property
    def is_argument(self) -> bool:
        return not self.flags


def argument(dest: str, metavar: str, help: str, *, required: bool = True, many: bool = False) -> Param:
    return Param(dest, (), str, help, metavar=metavar, required=required, many=many)


def flag(dest: str, flags: tuple[str, ...], help: str) -> Param:
    return Param(dest, flags, bool, help, default=False)


# --------------------------------------------------------------------------------------- shared

PRESET = argument("preset", "PRESET", "Preset name or path to a preset YAML file.")
JSON = flag("as_json", ("--json",), "Machine-readable JSON output.")
HARDWARE = Param("hardware_file", ("--hardware",), str,
                 "A probe saved with `vllm-launch probe --json > FILE`.", metavar="FILE")

# (option, preset field, type, help): accepted by every command that takes a preset.
_OVERRIDE_TABLE: list[tuple[str, str, type, str]] = [
    ("--model", "model", str, "Model (HF id or local path)."),
    ("--host", "host", str, "Address to bind (default 127.0.0.1)."),
    ("--port", "port", int, "Port to serve on."),
    ("--max-model-len", "max_model_len", int, "Context length."),
    ("--max-num-batched-tokens", "max_num_batched_tokens", int, "Tokens per scheduler step."),
    ("--gpu-memory-utilization", "gpu_memory_utilization", float, "Fraction of GPU memory vLLM may use."),
    ("--tp", "tensor_parallel_size", int, "Tensor parallel size."),
    ("--dp", "data_parallel_size", int, "Data parallel size (engine replicas, each TP x PP GPUs)."),
    ("--quantization", "quantization", str, "vLLM --quantization (fp8, awq, gptq, mxfp4, ...)."),
    ("--dtype", "dtype", str, "Model dtype (auto, float16, bfloat16, float32, ...)."),
    ("--kv-cache", "kv_cache_space_gib", int, "KV cache space in whole GiB (CPU: VLLM_CPU_KVCACHE_SPACE)."),
]
OVERRIDES: tuple[Param, ...] = (
    *(Param(f"ov_{field}", (option,), kind, help, panel=OVERRIDES_PANEL, group="overrides")
      for option, field, kind, help in _OVERRIDE_TABLE),
    Param("ov_set", ("--set",), str, "Set any preset field (repeatable), e.g. --set max_num_seqs=8.",
          metavar="KEY=VALUE", many=True, panel=OVERRIDES_PANEL, group="overrides"),
)

# (option, ExportOptions field, type, help): `render --format docker|compose|k8s|lws|ray|systemd`.
_EXPORT_TABLE: list[tuple[str, str, type, str]] = [
    ("--image-tag", "image_tag", str, "vLLM image tag (default latest)."),
    ("--image", "image", str, "Whole image reference, replacing vllm/vllm-openai[-cpu]:TAG."),
    ("--cpu-arch", "cpu_arch", str, "CPU image architecture: x86_64 or arm64."),
    ("--name", "name", str, "Kubernetes/Compose app name (a DNS label; never `vllm`)."),
    ("--namespace", "namespace", str, "Kubernetes namespace."),
    ("--replicas", "replicas", int, "Deployment / LeaderWorkerSet replicas."),
    ("--startup-timeout", "startup_timeout_s", int, "Start-up budget in seconds (default: from model size)."),
    ("--weights-gib", "weights_gib", float, "Model weights in GiB, for models the catalog does not know."),
    ("--hf-cache-path", "hf_cache_path", str, "Host directory for the Hugging Face cache."),
    ("--pvc", "pvc", str, "Existing PersistentVolumeClaim for the Hugging Face cache (k8s/lws)."),
    ("--secret-name", "secret_name", str, "Kubernetes Secret with VLLM_API_KEY / HF_TOKEN."),
    ("--shm-size", "shm_size_gib", int, "/dev/shm size in GiB."),
    ("--lws-mode", "lws_mode", str, "LeaderWorkerSet mode: ray or native."),
    ("--ray-port", "ray_port", int, "Ray head port (default 6379)."),
    ("--env-file", "env_file", str, "systemd EnvironmentFile holding the secrets."),
    ("--user", "user", str, "systemd User=."),
]
EXPORTS: tuple[Param, ...] = tuple(Param(f"ex_{field}", (option,), kind, help, panel=EXPORT_PANEL,
                                         group="export")
                                   for option, field, kind, help in _EXPORT_TABLE)

# --------------------------------------------------------------------------------------- render

FORMAT = Param("fmt", ("--format", "-f"), str,
               "shell/json: the vLLM command; docker, compose, k8s, systemd: one machine; lws, ray: "
               "multi-node presets.", default="shell", choices=RENDER_FORMATS)
ENTRYPOINT = Param("entrypoint", ("--entrypoint",), str,
                   "api_server: python -m vllm.entrypoints.openai.api_server; serve: vllm serve; auto: the "
                   "form the installed vLLM prefers (api_server on vllm-cpu).",
                   default="api_server", choices=ENTRYPOINTS)
OUTPUT = Param("output_dir", ("--output", "-o"), str,
               "Write the files into this directory instead of printing them.")
VLLM_VERSION = Param("vllm_version", ("--vllm-version",), str,
                     "Check the flags against this vLLM release (0.28 on): a flag it lacks is an error, a "
                     "deprecated one a warning.", metavar="X.Y.Z")

# ------------------------------------------------------------------------------------ probe, fit

DEVICE = Param("device", ("--device",), str,
               "Hypothetical machine: cuda or cpu (with --gpus/--gpu-mem-gib for cuda).")
GPUS = Param("gpus", ("--gpus",), int, "Hypothetical machine: number of GPUs.")
GPU_MEM = Param("gpu_mem_gib", ("--gpu-mem-gib",), float,
                "Hypothetical machine: memory per GPU in GiB (e.g. 79.19 for an H100 80GB).")
RAM = Param("ram_gib", ("--ram-gib",), float,
            "Hypothetical machine: host RAM in GiB (default: this machine's).")
MACHINE = (HARDWARE, DEVICE, GPUS, GPU_MEM, RAM)

# --------------------------------------------------------------------------------------- servers

SERVER_NAME = Param("name", ("--name",), str,
                    "Server name (default: the preset's name); several servers can run side by side.")
CLIENT_CONFIG = Param("client_config", ("--client-config",), str, "Write the client's profiles.yaml entry "
                      "(`vllm:` base_url, timeout) into FILE, keeping its other profiles.", metavar="FILE")
UP_PARAMS: tuple[Param, ...] = (
    PRESET, SERVER_NAME,
    flag("detach", ("--detach", "-d"),
         "Return once ready, leaving a background supervisor that owns the server."),
    Param("timeout_s", ("--timeout",), float, "Give up when not ready after S seconds (default: no overall "
          "limit; a stall timeout sized from past starts still applies).", metavar="S"),
    Param("restart", ("--restart",), str, "Restart after ready when vLLM exits or /health fails (exponential "
          "back-off, gives up).", default="on-failure", metavar="|".join(RESTART_MODES)),
    Param("gpus", ("--gpus",), str, "GPUs to use (CUDA_VISIBLE_DEVICES), distinct indices; starts sharing a "
          "GPU are serialized.", metavar="0,1"),
    flag("force", ("--force",), "Start even when the pre-flight checks refuse."),
    flag("dry_run", ("--dry-run",), "Print the command and the pre-flight results; start nothing."),
    Param("hardware_file", ("--hardware",), str, "Check the fit against a saved probe "
          "(`vllm-launch probe --json`) instead of this machine: for --dry-run and for a real start's "
          "pre-flight alike.", metavar="FILE"),
    flag("verbose", ("--verbose", "-v"),
         "Echo vLLM's INFO lines too (by default they go to the log file only)."),
    CLIENT_CONFIG,
    *OVERRIDES,
)


# --------------------------------------------------------------------------------------- gateway

GATEWAY_PARAMS: tuple[Param, ...] = (
    argument("presets", "PRESET", "Presets to serve (names or YAML paths); none: every preset that fits "
             "this machine.", required=False, many=True),
    Param("name", ("--name",), str, "The gateway's name (status, logs, down).", default="gateway"),
    Param("host", ("--host",), str, "Address to bind; one other than loopback needs --api-key-env when a "
          "preset has api_key_env.", default="127.0.0.1"),
    Param("port", ("--port",), int, "Port of the one endpoint.", default=8080),
    Param("idle", ("--idle",), str, "Stop (or put to sleep) a server after this long without requests, "
          "unless its preset sets idle_timeout; 0: never.", default="10m", metavar="DURATION"),
    flag("detach", ("--detach", "-d"), "Return once it listens, leaving the gateway in the background."),
    Param("api_key_env", ("--api-key-env",), str, "Require this variable's value as the clients' API key.",
          metavar="NAME"),
    Param("upstream", ("--upstream",), str, "Also route NAME to a server that runs already (never started or "
          "stopped by the gateway); repeatable.", metavar="NAME=URL", many=True),
    Param("hardware_file", ("--hardware",), str,
          "Schedule against a saved probe (`vllm-launch probe --json`).", metavar="FILE"),
    Param("memory_gib", ("--memory-gib",), float, "Host RAM the servers may use together (default: what is "
          "available).", metavar="GIB"),
    Param("gpu_memory_gib", ("--gpu-memory-gib",), float, "Memory per GPU the servers may use together "
          "(default: each GPU's total).", metavar="GIB"),
    Param("start_timeout", ("--start-timeout",), str, "Give up on a cold start after this long.",
          default="30m", metavar="DURATION"),
    Param("drain", ("--drain",), str, "On stop, let requests in flight end for this long; then open streams "
          "get an error event.", default="10s", metavar="DURATION"),
    Param("render", ("--render",), str, "Print a unit file for this gateway instead of running it.",
          choices=("systemd",)),
    Param("output_dir", ("--output", "-o"), str, "With --render: write the file into this directory."),
    CLIENT_CONFIG,
    Param("log_file", ("--log-file",), str, "Where a detached gateway logs.", hidden=True),
)


# ---------------------------------------------------------------------------------------- launch

LAUNCH_PARAMS: tuple[Param, ...] = (
    argument("client", "CLIENT", "claude, codex, opencode, aider or agent (the guide's Victor)."),
    argument("presets", "[PRESET]...", "Presets to serve through the gateway (the first is the client's "
             "model unless --model).", required=False, many=True),
    Param("endpoint", ("--endpoint",), str, "A server that runs already (http://HOST:PORT) instead of the "
          "gateway.", metavar="URL"),
    Param("model", ("--model",), str, "Which model the client uses: a preset's name, or one the endpoint "
          "lists."),
    Param("gateway_name", ("--gateway-name",), str, "The gateway to start or reuse.", default="gateway",
          metavar="NAME"),
    Param("port", ("--port",), int, "Its port, when it starts.", default=8080),
    Param("api_key_env", ("--api-key-env",), str, "The variable holding the server's key (passed to the "
          "client by reference).", metavar="NAME"),
    flag("print_only", ("--print",), "Show what it would start, set and write; change nothing."),
    flag("config_only", ("--config-only",), "Write the client's config, do not start the client."),
    flag("restore", ("--restore",), "Remove what vllm-launch wrote into the client's config."),
    flag("force", ("--force",), "Launch although a check fails."),
    flag("no_check", ("--no-check",), "Skip the live tool-calling check (doctor --tools)."),
    JSON,
    Param("client_args", ("--client-arg",), str, "What follows `--` (for the client).", many=True,
          hidden=True),
)


# ------------------------------------------------------------------------------------ overrides


def collect_overrides(values: dict[str, Any]) -> list[Override]:
    """Parsed values keyed `ov_<field>` (and `ov_set`: the --set items) -> overrides, in table order."""
    overrides: list[Override] = []
    for param in OVERRIDES:
        if param.dest == "ov_set":
            continue
        value = values.get(param.dest)
        if value is not None:
            overrides.append((param.flags[0], param.dest[3:], value))
    for item in values.get("ov_set") or []:
        overrides.append(parse_set(item))
    return overrides


def parse_set(item: str) -> Override:
    """`--set key=value`: the value is read as a YAML scalar, so `true`, `8` and `null` are typed."""
    import yaml

    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"expected KEY=VALUE, got {item!r}", source="--set")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return (f"--set {key}", key, value)


def body_arguments(params: tuple[Param, ...], values: dict[str, Any]) -> dict[str, Any]:
    """Parsed VALUES (by dest) -> the keyword arguments of a command body: plain params as themselves, the
    override group as `overrides`, the export group as `export_values` (field -> value, None: unset)."""
    kwargs: dict[str, Any] = {}
    for param in params:
        if param.group is None:
            kwargs[param.dest] = values.get(param.dest, param.default)
    if any(p.group == "overrides" for p in params):
        kwargs["overrides"] = collect_overrides(values)
    if any(p.group == "export" for p in params):
        kwargs["export_values"] = {p.dest[3:]: values.get(p.dest) for p in params if p.group == "export"}
    return kwargs
