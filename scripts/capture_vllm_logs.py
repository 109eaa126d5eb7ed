"""Capture real vLLM start-up logs (failures and a successful start) as test fixtures.

    /work/venv-probe/bin/python scripts/capture_vllm_logs.py [--only NAME ...] [--out DIR]

Builds the tiny models with vllm_launcher/demo/tiny_model.py (standalone, run by the vLLM interpreter), then
starts `python -m vllm.entrypoints.openai.api_server` once per scenario, one at a time, each in its own
process group on a free 127.0.0.1 port. A failing scenario is timed until vLLM exits; a starting one
until `GET /health` answers 200, after which /v1/models and two chat completions (with and without
`tools`) are checked and the server is stopped with SIGINT to its group (then SIGKILL, and leftover
/dev/shm/psm_* segments that no live process maps are removed).

Writes DIR/NAME.log (the log's relevant tail, paths replaced by <MODEL_DIR>, <site-packages>, ~),
DIR/index.json (command, env, exit code, seconds, expected text) and DIR/README.md, plus the tiny model
configs to tests/fixtures/tiny_configs/. Uses only the standard library (plus the builder's deps).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUILDER = REPO / "vllm_launcher" / "demo" / "tiny_model.py"
API_SERVER = "vllm.entrypoints.openai.api_server"
CONTEXT_LINES = 3
# Shutdown noise of the triton/nanobind and multiprocessing modules, dropped from the fixtures.
NOISE = re.compile(r"^(nanobind: |See https://nanobind| - |  warnings\.warn\()")
START_TIMEOUT_S = 300.0

# Tiny model variants: the demo (GQA), the same without GQA, and one whose KV cache per token is large
# (8 layers x 16 KV heads x head size 32, float32: 32 KiB/token, so 1 GiB holds 32,768 tokens). vLLM's
# Qwen2 takes the head size from hidden_size / num_attention_heads, so hidden_size sets it.
ARCHS: dict[str, dict] = {
    "gqa": {},
    "mha": {"num_key_value_heads": 4},
    "bigkv": {"hidden_size": 512, "num_hidden_layers": 8,
              "num_attention_heads": 16, "num_key_value_heads": 16,
              "max_position_embeddings": 65536},
}

# Other families, built by tests/tiny_families.py (with the gqa build's tokenizer): arch name -> family.
FAMILY_ARCHS = {"dsv2": "deepseek_v2"}
FAMILY_BUILDER = REPO / "tests" / "tiny_families.py"
# tests/fake_amx on PYTHONPATH: torch reports AMX tiles, so vLLM takes an AMX CPU's code path.
FAKE_AMX = str(REPO / "tests" / "fake_amx")

BASE_FLAGS = ["--served-model-name", "demo", "--dtype", "float32", "--enforce-eager"]


@dataclass
class Scenario:
    name: str
    what: str
    arch: str = "gqa"
    flags: list[str] = field(default_factory=list)
    env: dict[str, str | None] = field(default_factory=lambda: {"VLLM_CPU_KVCACHE_SPACE": "1"})
    expect_ready: bool = False
    expect_text: str = ""
    hold_port: bool = False  # bind the port first so vLLM finds it in use
    whole_log: bool = False  # keep the whole log (successful starts), not only from the first error on
    # What --model is, when not the arch's model directory: "{model_dir}" and "{work_dir}" are filled in.
    model: str | None = None


SCENARIOS = [
    Scenario("ready_gqa", "successful start of the demo model (GQA: 2 KV heads)",
             flags=["--max-model-len", "2048", "--enable-auto-tool-choice", "--tool-call-parser", "hermes"],
             expect_ready=True, expect_text="CPU KV cache size", whole_log=True),
    Scenario("ready_mha", "successful start without GQA (num_key_value_heads 4)", arch="mha",
             flags=["--max-model-len", "2048", "--enable-auto-tool-choice", "--tool-call-parser", "hermes"],
             expect_ready=True, expect_text="CPU KV cache size", whole_log=True),
    Scenario("batched_below_len", "max_num_batched_tokens < max_model_len with chunked prefill off",
             flags=["--max-model-len", "4096", "--max-num-batched-tokens", "2048",
                    "--no-enable-chunked-prefill"],
             expect_text="is smaller than max_model_len"),
    Scenario("len_above_positions", "--max-model-len above max_position_embeddings (4096)",
             flags=["--max-model-len", "8192"], expect_text="is greater than the derived max_model_len"),
    Scenario("unknown_tool_parser", "unknown --tool-call-parser",
             flags=["--max-model-len", "2048", "--enable-auto-tool-choice", "--tool-call-parser", "nosuch"],
             expect_text="invalid tool call parser"),
    Scenario("auto_tool_choice_without_parser", "--enable-auto-tool-choice without --tool-call-parser",
             flags=["--max-model-len", "2048", "--enable-auto-tool-choice"],
             expect_text="--enable-auto-tool-choice requires --tool-call-parser"),
    Scenario("port_in_use", "the port is already bound by another process",
             flags=["--max-model-len", "2048"], hold_port=True, expect_text="Address already in use"),
    Scenario("kvcache_space_unset", "VLLM_CPU_KVCACHE_SPACE unset: the default reservation is refused",
             flags=["--max-model-len", "2048"], env={"VLLM_CPU_KVCACHE_SPACE": None},
             expect_text="is less than desired CPU memory utilization"),
    Scenario("kv_cache_too_small", "KV cache (1 GiB) too small for one max_model_len request",
             arch="bigkv", flags=["--max-model-len", "65536"],
             expect_text="To serve at least one request"),
    Scenario("tensor_parallel_2", "--tensor-parallel-size 2 on this CPU",
             flags=["--max-model-len", "2048", "--tensor-parallel-size", "2"],
             expect_text="Not enough allowed NUMA nodes"),
    Scenario("amx_mla_float32", "an MLA model (DeepSeek-V2) in float32 on a CPU with AMX (AMX reported "
             "by tests/fake_amx on this CPU without it: vLLM's AMX_MLA backend cannot pack float32)",
             arch="dsv2", flags=["--max-model-len", "2048"],
             env={"VLLM_CPU_KVCACHE_SPACE": "1", "PYTHONPATH": FAKE_AMX},
             expect_text="expect weight to be bfloat16"),
    # A model path that is not there (a typo), or not a model: each spelling vLLM (transformers,
    # huggingface_hub) reports its own way. Offline, as the test machines are: no hub lookup to wait for.
    Scenario("model_missing_absolute", "--model an absolute path that does not exist",
             model="/srv/models/qwen2.5-typo", flags=["--max-model-len", "2048"],
             env={"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"},
             expect_text="/srv/models/qwen2.5-typo"),
    Scenario("model_missing_relative", "--model a ./relative path that does not exist",
             model="./models/qwen-typo", flags=["--max-model-len", "2048"],
             env={"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}, expect_text="./models/qwen-typo"),
    Scenario("model_missing_home", "--model a ~/path that does not exist (no shell expands the ~)",
             model="~/models/qwen-typo", flags=["--max-model-len", "2048"],
             env={"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}, expect_text="models/qwen-typo"),
    Scenario("model_missing_one_level", "--model a one-level relative path that does not exist (a repo id "
             "in form: looked up in the hub cache)", model="qwen-typo", flags=["--max-model-len", "2048"],
             env={"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}, expect_text="qwen-typo"),
    Scenario("model_repo_not_cached", "--model a repo id that is not in the hub cache, offline",
             model="nosuch-org/nosuch-model", flags=["--max-model-len", "2048"],
             env={"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"},
             expect_text="nosuch-org/nosuch-model"),
    Scenario("model_bad_repo_id", "--model a name that is neither a path nor a repo id (an Ollama tag)",
             model="qwen2.5-coder:7b", flags=["--max-model-len", "2048"],
             env={"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}, expect_text="qwen2.5-coder:7b"),
    Scenario("model_missing_absolute_online", "--model an absolute path that does not exist, hub lookups on "
             "(no network here)", model="/srv/models/qwen2.5-typo", flags=["--max-model-len", "2048"],
             expect_text="/srv/models/qwen2.5-typo"),
    Scenario("model_repo_online", "--model a repo id that is not in the hub cache, hub lookups on (no "
             "network here)", model="nosuch-org/nosuch-model", flags=["--max-model-len", "2048"],
             expect_text="nosuch-org/nosuch-model"),
    Scenario("model_is_a_file", "--model a file (the model's config.json), not its directory",
             model="{model_dir}/config.json", flags=["--max-model-len", "2048"],
             env={"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}, expect_text="config.json"),
    Scenario("model_dir_without_config", "--model a directory without config.json",
             model="{work_dir}/empty-model", flags=["--max-model-len", "2048"],
             env={"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}, expect_text="empty-model"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body: dict | None = None, timeout_s: float = 120.0) -> tuple[int, str]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return 0, ""


def shm_segments() -> set[str]:
    return {p.name for p in Path("/dev/shm").glob("psm_*")}


def mapped_shm() -> set[str]:
    """psm_* segments some live process still maps or holds open (those are not ours to remove)."""
    names: set[str] = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            names.update(re.findall(r"/dev/shm/(psm_\w+)", (proc / "maps").read_text()))
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("/dev/shm/psm_"):
                    names.add(target.rsplit("/", 1)[1])
        except OSError:
            continue
    return names


def group_alive(pgid: int) -> bool:
    """Whether a live (non-zombie) process is left in the group; zombies are not reaped here when their
    parent is gone, so os.killpg(pgid, 0) alone would wait forever."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def stop_group(proc: subprocess.Popen, grace_s: float = 30.0) -> str:
    """SIGINT the group (vLLM ignores SIGTERM while starting), wait, then SIGKILL what is left."""
    pgid = proc.pid
    how = "exited"
    if group_alive(pgid):
        how = "sigint"
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGINT)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and group_alive(pgid):
            proc.poll()  # reap our own child so it does not linger as a zombie
            time.sleep(0.2)
        if group_alive(pgid):
            how = "sigkill"
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            while group_alive(pgid):
                proc.poll()
                time.sleep(0.1)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    return how


def sanitize(text: str, model_dir: Path, python: str) -> str:
    site = next((p for p in sys.path if p.endswith("site-packages")), None)
    replacements = [(str(model_dir), "<MODEL_DIR>"), (str(model_dir.parent), "<WORK_DIR>")]
    if site:
        replacements.append((site, "<site-packages>"))
    replacements += [(str(Path(python).parent.parent), "<venv>"), (FAKE_AMX, "<repo>/tests/fake_amx"),
                     (str(REPO), "<repo>"),
                     (sys.base_prefix, "<python>"),
                     (str(Path.home()), "~")]
    for old, new in replacements:
        text = text.replace(old, new)
    return text


def trim(text: str, whole_log: bool) -> str:
    """Drop shutdown noise; for failures keep from a few lines before the first error to the end (the root
    cause comes first, then the same traceback again from each process, up to ~130 lines later)."""
    lines = [line for line in text.splitlines() if not NOISE.match(line)]
    if not whole_log:
        first = next((i for i, line in enumerate(lines) if " ERROR " in line or line.startswith("Traceback")),
                     max(len(lines) - 40, 0))
        start = max(first - CONTEXT_LINES, 0)
        # vLLM's own record of what it was given (the model, the flags): kept above the cut.
        args = [line for line in lines[:start] if "non-default args:" in line][:1]
        lines = args + lines[start:]
    return "\n".join(lines) + "\n"


def check_server(base: str) -> dict:
    """After /health is 200: /v1/models and chat completions with and without tools."""
    status_models, models = http("GET", base + "/v1/models")
    chat = {"model": "demo", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 8}
    status_chat, _ = http("POST", base + "/v1/chat/completions", chat)
    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    status_tools, _ = http("POST", base + "/v1/chat/completions",
                           {**chat, "tools": tools, "tool_choice": "auto"})
    served = [m.get("id") for m in json.loads(models).get("data", [])] if status_models == 200 else []
    return {"models_status": status_models, "served": served,
            "chat_status": status_chat, "chat_with_tools_status": status_tools}


def run_scenario(sc: Scenario, python: str, model_dir: Path, log_path: Path) -> dict:
    port = free_port()
    holder = None
    if sc.hold_port:
        holder = socket.socket()
        holder.bind(("127.0.0.1", port))
        holder.listen(1)
    model = str(model_dir)
    if sc.model is not None:
        model = sc.model.format(model_dir=model_dir, work_dir=model_dir.parent)
        if sc.model.startswith("{work_dir}"):
            Path(model).mkdir(parents=True, exist_ok=True)
    argv = [python, "-m", API_SERVER, "--model", model, *BASE_FLAGS,
            "--host", "127.0.0.1", "--port", str(port), *sc.flags]
    env = dict(os.environ)
    for key, value in sc.env.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    shm_before = shm_segments()
    result: dict = {"what": sc.what, "arch": sc.arch, "expect_ready": sc.expect_ready}
    with open(log_path, "wb") as log:
        start = time.monotonic()
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            base = f"http://127.0.0.1:{port}"
            ready = False
            while time.monotonic() - start < START_TIMEOUT_S:
                if proc.poll() is not None:
                    break
                if not sc.hold_port and http("GET", base + "/health", timeout_s=2)[0] == 200:
                    ready = True
                    break
                time.sleep(0.25)
            elapsed_s = time.monotonic() - start
            result.update(ready=ready, seconds=round(elapsed_s, 1), returncode=proc.poll())
            if ready:
                result.update(check_server(base))
        finally:
            result["stopped_by"] = stop_group(proc)
            if holder:
                holder.close()
    leftover = (shm_segments() - shm_before) - mapped_shm()
    for name in leftover:
        Path("/dev/shm", name).unlink(missing_ok=True)
    result["shm_removed"] = len(leftover)
    shown_env = {k: ("<unset>" if v is None else sanitize(v, model_dir, python)) for k, v in sc.env.items()}
    result["env"] = shown_env
    result["argv"] = ["python", *[sanitize(a, model_dir, python) for a in argv[1:]]]
    result["argv"][result["argv"].index("--port") + 1] = "PORT"
    return result


def finish(sc: Scenario, result: dict, raw_log: Path, model_dir: Path, python: str, out: Path) -> dict:
    """Sanitize and trim a raw log into OUT/NAME.log; add what it shows to `result`."""
    text = sanitize(raw_log.read_text(errors="replace"), model_dir, python)
    kept = trim(text, sc.whole_log)
    result["expect_text"] = sc.expect_text
    result["expect_text_found"] = sc.expect_text in kept
    result.pop("cause_lines_from_end", None)
    if not sc.expect_ready and sc.expect_text in kept:
        # How many tail lines a diagnosis must read to see the cause (its last mention).
        lines = kept.splitlines()
        last = max(i for i, line in enumerate(lines) if sc.expect_text in line)
        result["cause_lines_from_end"] = len(lines) - last
    kv = re.findall(r"CPU KV cache size: [\d,]+ tokens.*", text)
    if kv:
        result["kv_line"] = kv[-1]
    (out / f"{sc.name}.log").write_text(kept)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="interpreter that has vLLM")
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures" / "vllm_logs")
    parser.add_argument("--configs", type=Path, default=REPO / "tests" / "fixtures" / "tiny_configs")
    parser.add_argument("--only", nargs="*", default=None, help="scenario names to run")
    parser.add_argument("--work", type=Path, default=None,
                        help="keep models and raw logs here (default: a temporary directory, removed)")
    parser.add_argument("--retrim", action="store_true",
                        help="do not start vLLM: re-make the fixtures from the raw logs kept in --work")
    args = parser.parse_args()
    if args.retrim and not args.work:
        parser.error("--retrim needs --work")

    work = args.work or Path(tempfile.mkdtemp(prefix="vllm-launch-capture-"))
    work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    args.configs.mkdir(parents=True, exist_ok=True)
    index_path = args.out / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    try:
        model_dirs = {arch: work / f"tiny-{arch}" for arch in [*ARCHS, *FAMILY_ARCHS]}
        if not args.retrim:
            for arch, overrides in ARCHS.items():
                subprocess.run([args.python, str(BUILDER), "--out", str(model_dirs[arch]),
                                "--arch", json.dumps(overrides)], check=True, stdout=subprocess.DEVNULL)
                (args.configs / f"{arch}.json").write_text((model_dirs[arch] / "config.json").read_text())
            for arch, family in FAMILY_ARCHS.items():
                subprocess.run([args.python, str(FAMILY_BUILDER), "--family", family, "--out",
                                str(model_dirs[arch]), "--tokenizer-from", str(model_dirs["gqa"])],
                               check=True,
                               stdout=subprocess.DEVNULL)
        for sc in SCENARIOS:
            if args.only and sc.name not in args.only:
                continue
            raw_log = work / f"{sc.name}.raw.log"
            if args.retrim:
                result = index[sc.name]
            else:
                print(f"== {sc.name}: {sc.what}", flush=True)
                result = run_scenario(sc, args.python, model_dirs[sc.arch], raw_log)
            index[sc.name] = finish(sc, result, raw_log, model_dirs[sc.arch], args.python, args.out)
            print(json.dumps(index[sc.name], indent=2), flush=True)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    index_path.write_text(json.dumps(index, indent=2) + "\n")
    write_readme(args.out, index)
    return 0


def write_readme(out: Path, index: dict) -> None:
    lines = [
        "# Real vLLM logs (vllm-cpu 0.32.0, 2-core x86 CPU, no GPU)",
        "",
        "Captured by `scripts/capture_vllm_logs.py` (regenerate: `/work/venv-probe/bin/python",
        "scripts/capture_vllm_logs.py [--only NAME]`).",
        "Models are the tiny random-weight Qwen2 builds of `vllm_launcher/demo/tiny_model.py`; their configs",
        "are in `../tiny_configs/`. Failure logs start 3 lines before the first ERROR/Traceback (after",
        "vLLM's `non-default args` line);",
        "`ready_*` logs are complete (note the ERROR `EngineDeadError` that vLLM logs during a normal",
        "SIGINT shutdown); shutdown noise (nanobind leak reports) is dropped. \"cause, lines from end\":",
        "how many tail lines show the expected message (its last mention). Paths are replaced by",
        "`<MODEL_DIR>`, `<site-packages>`, `<venv>`, `<python>`, `~`. `index.json` has the same data",
        "as JSON.",
        "Every command is `python -m vllm.entrypoints.openai.api_server --model <MODEL_DIR>",
        "--served-model-name demo --dtype float32 --enforce-eager --host 127.0.0.1 --port PORT` plus the",
        "flags below, with env `VLLM_CPU_KVCACHE_SPACE=1` unless stated. Seconds: from spawn to exit",
        "(failures) or to the first `/health` 200 (ready), measured while other test suites shared the",
        "2 cores.",
        "",
        "| log | what | arch | seconds | exit | cause, lines from end | flags after the common ones |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in index.items():
        argv = r["argv"]
        flags = argv[argv.index("PORT") + 1:]
        env = "" if r["env"] == {"VLLM_CPU_KVCACHE_SPACE": "1"} else " (env: " + ", ".join(
            f"{k}={v}" for k, v in r["env"].items()) + ")"
        exit_code = "ready" if r.get("ready") else r.get("returncode")
        model = argv[argv.index("--model") + 1]
        env += f" (--model `{model}`)" if model != "<MODEL_DIR>" else ""
        lines.append(f"| `{name}.log` | {r['what']}{env} | {r['arch']} | {r['seconds']} | {exit_code} | "
                     f"{r.get('cause_lines_from_end', '')} | `{' '.join(flags)}` |")
    kv_lines = [f"- `{name}`: `{r['kv_line']}`" for name, r in index.items() if r.get("kv_line")]
    if kv_lines:
        lines += ["", "KV cache lines:", *kv_lines]
    (out / "README.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
