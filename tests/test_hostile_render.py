"""Hostile presets against every rendered format (property-based, hypothesis).

Presets are built from random mixtures of the strings that break quoting: newlines, quotes, `$()`,
backticks, `%` specifiers, NUL, U+2028/U+2029, NEL, bidi overrides, YAML and unit-file syntax. For each:

- validation refuses it exactly when a field holds what no format can carry (control/format characters,
  a value that vLLM would read as a flag, NUL in an env value), naming the field;
- otherwise every format renders, and each file is read back by the tool that consumes it: scripts run
  under bash/sh with stub `docker`, `ray`, `vllm`, `python3`, `bash` that record their argv and env (so
  the words that arrive are compared with the plan, and a `$(touch PWNED)` that ran would leave a file);
  YAML is parsed (yaml.safe_load_all) and decoded the way Kubernetes (`$(VAR)`, `$$`) and Compose (`$$`)
  do, and checked against the Kubernetes API schemas; units pass `systemd-analyze verify` and decode
  (quotes, C escapes, `%%`, `$$`) to exactly the plan's argv and env with exactly the expected directives.

Deterministic (derandomize) and bounded, so CI runs the same examples every time in well under 60 s.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from hypothesis import HealthCheck, Phase, event, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from vllm_launcher.exporters import as_text, render
from vllm_launcher.exporters.common import container_preset
from vllm_launcher.exporters.options import ExportOptions
from vllm_launcher.preset.plan import build_plan, format_json, format_shell, vllm_flags
from vllm_launcher.preset.schema import Preset

# The oracle's own list (not the product's): controls, format characters, surrogates, line/paragraph
# separators cannot be carried by every format, so validation must refuse them in argv text.
FORBIDDEN_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}

K8S_VERSION = kubernetes_validate.latest_version()
PWNED = "PWNED"
HOSTILE_PIECES = [
    "\n", "\r", "\r\n", "'", '"', "$(", ")", "`", "%", "%n", "%%", "\\", "\\\n", ";", "&", "|", " ", "\t",
    "$", "${HOME}", "$HOME", "$$", "#", ":", "{", "}", "[", "]", "*", "&a", "*a", "!", "?", "<", ">", "=",
    ",", "-", "--x", "\0", "\x1b[31m", "\u2028", "\u2029", "\x85", "\u202e", "\u200b", "é", "日本",
    "\U0001F600",
    f"$(touch {PWNED})", f"`touch {PWNED}`", f"';touch {PWNED};'", f'";touch {PWNED};"',
    "\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: pwn}\n", "\nExecStartPre=/bin/touch PWNED\n",
    "\n[Service]\nUser=root\n", "model", "Qwen/Qwen2.5-7B", "/models/x y", "--api-key=sk", "${IFS}", "\\x41",
]
# Pieces that some format must quote but every format can carry: most examples use only these, so that
# most presets are accepted and rendered; the rest mix in what validation must refuse.
QUOTABLE_PIECES = [p for p in HOSTILE_PIECES
                   if not any(c in p for c in "\n\r\t\0\x1b\u2028\u2029\x85\u202e\u200b")
                   and not p.startswith("-")]
quotable_text = st.lists(st.sampled_from(QUOTABLE_PIECES) | st.text(st.characters(codec="utf-8",
                         categories=("L", "N", "P", "S", "Zs")), min_size=1, max_size=3),
                         min_size=1, max_size=5).map(lambda pieces: "".join(pieces).lstrip("-") or "x")
any_text = st.lists(st.sampled_from(HOSTILE_PIECES) | st.text(max_size=3), min_size=1,
                    max_size=5).map("".join)
# Env values may hold anything but NUL (a newline is a legitimate, if rare, value): every format quotes it.
env_text = any_text.map(lambda text: text.replace("\0", ""))
SETTINGS = settings(max_examples=int(os.environ.get("HOSTILE_EXAMPLES", "40")), deadline=None,
                    derandomize=True, database=None, phases=(Phase.explicit, Phase.generate, Phase.shrink),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
STUBS = {
    # Every stub records its own argv (NUL-separated) and environment, then succeeds.
    "record": '#!/bin/sh\nprintf "%s\\0" "$0" "$@" > "$STUB_OUT/$(basename "$0").argv"\n'
              'env -0 > "$STUB_OUT/$(basename "$0").env"\n',
    "python3": '#!/bin/sh\necho 2\n',  # ray-head.sh counts live Ray nodes with python3: two have joined
}


# ---------------------------------------------------------------------------------- the oracle


def unquotable(value: str, *, env_value: bool = False) -> bool:
    """What validation must refuse: NUL anywhere; in argv text also control/format characters and a
    leading '-'. Independent of the product's code (unicodedata only)."""
    import unicodedata

    if env_value:
        return "\0" in value
    return value.startswith("-") or any(unicodedata.category(c) in FORBIDDEN_CATEGORIES for c in value)


# A served model name is a name (vllm_launcher.base.inputs.SERVED_NAME, restated): the SERVED text is the name
# when it is one, and rides in any case as a flag's value (--tokenizer=), so every format carries it.
SERVED_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,255}")


def hostile_preset(model: str, served: str, parser: str, env_a: str, env_b: str, extra: str,
                   device: str, nodes: int) -> tuple[dict, bool]:
    name = served if SERVED_NAME.fullmatch(served) and ".." not in served else "served"
    data = {
        "name": "hostile", "model": model, "served_model_name": name, "device": device,
        "tool_calling": {"enabled": True, "parser": parser}, "env": {"A_VAR": env_a, "B_VAR": env_b},
        "extra_args": [f"--chat-template={extra}", f"--tokenizer={served}"], "kv_cache_space_gib": 2,
    }
    if nodes > 1:
        data.update(nodes=nodes, tensor_parallel_size=8, pipeline_parallel_size=nodes, gpus_per_node=8)
    refused = (any(v == "" or unquotable(v) for v in (model, parser)) or unquotable("x" + extra)
               or unquotable("x" + served) or any(unquotable(v, env_value=True) for v in (env_a, env_b)))
    return data, refused


# ------------------------------------------------------------------------------ running scripts


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """A working directory with stub tools first on PATH; PWNED would appear here if injection ran."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("docker", "ray", "vllm", "bash", "python-stub"):
        (bin_dir / tool).write_text(STUBS["record"])
    (bin_dir / "python3").write_text(STUBS["python3"])
    for path in bin_dir.iterdir():
        path.chmod(0o755)
    (tmp_path / "out").mkdir()
    return tmp_path


def run_script(sandbox: Path, shell: str, script: str, extra_env: dict[str, str] | None = None) -> None:
    """Run SCRIPT under SHELL (after its `-n` syntax check) with the stubs; it must succeed and run nothing
    that was injected."""
    path = sandbox / "script.sh"
    path.write_text(script)
    shell = shutil.which(shell) or shell  # the real one: the stubs' PATH has a `bash` that only records
    checked = subprocess.run([shell, "-n", str(path)], capture_output=True, text=True, timeout=30,
                             check=False)
    assert checked.returncode == 0, (shell, checked.stderr, script)
    env = {"PATH": f"{sandbox / 'bin'}:/usr/bin:/bin", "HOME": str(sandbox), "STUB_OUT": str(sandbox / "out"),
           **(extra_env or {})}
    done = subprocess.run([shell, str(path)], cwd=sandbox, env=env, capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 0, (done.stderr, script)
    assert not (sandbox / PWNED).exists(), f"injected code ran:\n{script}"


def recorded(sandbox: Path, tool: str) -> tuple[list[str], dict[str, str]]:
    """(argv after the program, environment) that the stub TOOL received; the record is then removed."""
    argv_path, env_path = sandbox / "out" / f"{tool}.argv", sandbox / "out" / f"{tool}.env"
    argv = argv_path.read_bytes().decode().split("\0")[1:-1]
    env = dict(item.split("=", 1) for item in env_path.read_bytes().decode().split("\0") if "=" in item)
    argv_path.unlink()
    env_path.unlink()
    return argv, env


# ---------------------------------------------------------------------------- decoding formats


def k8s_expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' expansion of command/args/env values (third_party/forked/golang/expansion/expand.go):
    `$$` is `$`, `$(NAME)` is NAME's value when defined, anything else stays as written."""
    out, index = [], 0
    while index < len(text):
        char = text[index]
        if char == "$" and index + 1 < len(text):
            following = text[index + 1]
            if following == "$":
                out.append("$")
                index += 2
                continue
            if following == "(":
                close = text.find(")", index + 2)
                if close >= 0:
                    name = text[index + 2:close]
                    out.append(env.get(name, f"$({name})"))
                    index = close + 1
                    continue
            out.append("$" + following)
            index += 2
            continue
        out.append(char)
        index += 1
    return "".join(out)


def compose_unescape(text: str) -> str:
    """Compose's interpolation of a value we wrote: `$$` is `$`; any other `$` would be a variable."""
    out, index = [], 0
    while index < len(text):
        if text[index] == "$":
            assert text[index + 1:index + 2] == "$", f"unescaped $ in compose value {text!r}"
            out.append("$")
            index += 2
        else:
            out.append(text[index])
            index += 1
    return "".join(out)


C_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\",
             '"': '"', "'": "'", "s": " "}


def systemd_words(value: str) -> list[str]:
    """systemd.syntax(7) "Quoting": words split at whitespace; "..." or '...' group; C escapes resolved."""
    words: list[str] = []
    index = 0
    while index < len(value):
        while index < len(value) and value[index] in " \t":
            index += 1
        if index >= len(value):
            break
        word, quote = [], None
        while index < len(value):
            char = value[index]
            if quote is None and char in " \t":
                break
            if char in "\"'" and (quote is None or quote == char):
                quote = None if quote else char
                index += 1
                continue
            if char == "\\":
                code = value[index + 1]
                if code in C_ESCAPES:
                    word.append(C_ESCAPES[code])
                    index += 2
                elif code in "xuU":
                    width = {"x": 2, "u": 4, "U": 8}[code]
                    word.append(chr(int(value[index + 2:index + 2 + width], 16)))
                    index += 2 + width
                elif code == ";":
                    word.append(";")
                    index += 2
                else:
                    raise AssertionError(f"unknown escape \\{code} in {value!r}")
                continue
            word.append(char)
            index += 1
        assert quote is None, f"unbalanced quote in {value!r}"
        words.append("".join(word))
    return words


def unit_directives(unit: str) -> list[tuple[str, str, str]]:
    """(section, key, value) of every directive, as systemd reads the file (comments skipped; a line ending
    in a backslash continues)."""
    found, section, pending = [], "", ""
    for line in unit.split("\n"):
        if pending:
            line, pending = pending + " " + line, ""
        if line.endswith("\\") and not line.startswith(("#", ";")):
            pending = line[:-1]
            continue
        if not line.strip() or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.append((section, key, value))
    return found


def unspecify(value: str, dollars: bool) -> str:
    """Undo `%%` (specifiers) and, in Exec lines, `$$` (variables), after word splitting."""
    value = value.replace("%%", "%")
    return value.replace("$$", "$") if dollars else value


# ------------------------------------------------------------------------------------- checks


def check_shell_and_json(preset: Preset, sandbox: Path) -> None:
    plan = build_plan(preset.model_copy(update={"python": str(sandbox / "bin" / "python-stub")}))
    run_script(sandbox, "bash", format_shell(plan) + "\n")
    argv, env = recorded(sandbox, "python-stub")
    assert argv == plan.argv[1:]
    assert {k: env[k] for k in plan.env} == plan.env
    assert json.loads(format_json(plan)) == {"argv": plan.argv, "env": plan.env}


def container_args(preset: Preset) -> list[str]:
    return ["--model", preset.model, *vllm_flags(container_preset(preset))]


def check_docker(preset: Preset, sandbox: Path) -> None:
    run_script(sandbox, "sh", render("docker", preset)["run.sh"])
    argv, _env = recorded(sandbox, "docker")
    assert argv[:4] == ["run", "--rm", "--name", "hostile"]
    image_at = argv.index("vllm/vllm-openai:latest" if preset.device == "cuda"
                          else "vllm/vllm-openai-cpu:latest-x86_64")
    assert argv[image_at + 1:] == container_args(preset)
    for key, value in preset.env.items():
        assert f"{key}={value}" in argv[:image_at]


def check_compose(preset: Preset) -> None:
    docs = list(yaml.safe_load_all(render("compose", preset)["compose.yaml"]))
    assert len(docs) == 1 and list(docs[0]) == ["services"] and list(docs[0]["services"]) == ["hostile"]
    service = docs[0]["services"]["hostile"]
    assert [compose_unescape(arg) for arg in service["command"]] == container_args(preset)
    for key, value in preset.env.items():
        assert compose_unescape(service["environment"][key]) == value


def check_k8s(preset: Preset) -> None:
    files = render("k8s", preset)
    docs = [doc for doc in yaml.safe_load_all(as_text(files)) if doc is not None]
    assert [d["kind"] for d in docs] == ["Deployment", "Service", "PersistentVolumeClaim"]
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    pod = docs[0]["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["vllm"] and "initContainers" not in pod
    container = pod["containers"][0]
    env = {e["name"]: k8s_expand(e["value"], {}) for e in container["env"] if "value" in e}
    assert container["command"] + [k8s_expand(a, env) for a in container["args"]] == \
        ["vllm", "serve", preset.model, *vllm_flags(container_preset(preset))]
    assert {k: env[k] for k in preset.env} == preset.env


def check_lws(preset: Preset, sandbox: Path) -> None:
    serve = ["serve", preset.model, *vllm_flags(container_preset(preset))]
    lws_env = {"LWS_LEADER_ADDRESS": "10.0.0.1", "LWS_GROUP_SIZE": "2", "LWS_WORKER_INDEX": "1"}
    for mode in ("ray", "native"):
        docs = [d for d in yaml.safe_load_all(as_text(render("lws", preset, ExportOptions(lws_mode=mode))))
                if d]
        assert [d["kind"] for d in docs] == ["LeaderWorkerSet", "Service"]
        template = docs[0]["spec"]["leaderWorkerTemplate"]
        leader = template["leaderTemplate"]["spec"]["containers"]
        worker = template["workerTemplate"]["spec"]["containers"]
        assert len(leader) == 1 and len(worker) == 1
        leader_cmd = [k8s_expand(word, lws_env) for word in leader[0]["command"]]
        worker_cmd = [k8s_expand(word, lws_env) for word in worker[0]["command"]]
        if mode == "native":
            group = ["--distributed-executor-backend", "mp", "--nnodes", "2", "--master-addr", "10.0.0.1"]
            assert leader_cmd == ["vllm", *serve, *group, "--node-rank", "0"]
            assert worker_cmd == ["vllm", *serve, *group, "--node-rank", "1", "--headless"]
            continue
        assert leader_cmd[:2] == ["sh", "-c"] and len(leader_cmd) == 3
        run_script(sandbox, "sh", leader_cmd[2] + "\n")
        argv, _env = recorded(sandbox, "vllm")
        assert argv == [*serve, "--distributed-executor-backend", "ray"]
        recorded(sandbox, "bash")  # the Ray start script ran first


def check_ray(preset: Preset, sandbox: Path) -> None:
    files = render("ray", preset)
    run_script(sandbox, "bash", files["ray-head.sh"], {"HEAD_NODE_IP": "10.0.0.1"})
    argv, env = recorded(sandbox, "vllm")
    assert argv == [*build_plan(preset, "serve").argv[1:], "--distributed-executor-backend", "ray"]
    assert {k: env[k] for k in preset.env} == preset.env
    recorded(sandbox, "ray")
    run_script(sandbox, "bash", files["ray-worker.sh"], {"HEAD_NODE_IP": "10.0.0.1", "NODE_IP": "10.0.0.2"})
    argv, env = recorded(sandbox, "ray")
    assert argv == ["start", "--address=10.0.0.1:6379", "--node-ip-address=10.0.0.2", "--block"]
    assert {k: env[k] for k in preset.env} == preset.env


SYSTEMD_KEYS = [
    ("Unit", "Description"), ("Unit", "After"), ("Unit", "Wants"), ("Unit", "StartLimitIntervalSec"),
    ("Unit", "StartLimitBurst"), ("Service", "Type"), "ENVIRONMENT", ("Service", "EnvironmentFile"),
    ("Service", "ExecStart"), ("Service", "ExecStartPost"), ("Service", "TimeoutStartSec"),
    ("Service", "Restart"), ("Service", "RestartSec"), ("Service", "RestartSteps"),
    ("Service", "RestartMaxDelaySec"), ("Service", "KillMode"), ("Service", "KillSignal"),
    ("Service", "TimeoutStopSec"), ("Install", "WantedBy"),
]


def expected_unit_keys(env_count: int) -> list[tuple[str, str]]:
    """Exactly the directives of a unit: PYTHONUNBUFFERED plus one Environment= per variable of the plan."""
    keys: list[tuple[str, str]] = []
    for key in SYSTEMD_KEYS:
        keys += [("Service", "Environment")] * (1 + env_count) if key == "ENVIRONMENT" else [key]  # type: ignore[list-item]
    return keys


def check_systemd(preset: Preset, sandbox: Path) -> None:
    preset = preset.model_copy(update={"python": sys.executable})  # verify checks that ExecStart exists
    plan = build_plan(preset)
    unit = render("systemd", preset)["vllm-hostile.service"]
    path = sandbox / "vllm-hostile.service"
    path.write_text(unit)
    verify = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True,
                            timeout=60, check=False, env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"})
    # systemd 252 (here) predates RestartSteps=/RestartMaxDelaySec= (254); the unit says so. Nothing else.
    complaints = [line for line in verify.stderr.splitlines()
                  if line.strip() and not re.search(r"Unknown key '(RestartSteps|RestartMaxDelaySec)'", line)]
    assert verify.returncode == 0 and not complaints, (verify.stderr, unit)
    directives = unit_directives(unit)
    assert [(s, k) for s, k, _v in directives] == expected_unit_keys(len(plan.env)), unit
    values = {key: value for _s, key, value in directives if key != "Environment"}
    assert [unspecify(w, dollars=True) for w in systemd_words(values["ExecStart"])] == plan.argv
    env = {}
    for _s, key, value in directives:
        if key == "Environment":
            for word in systemd_words(value):
                name, _, val = unspecify(word, dollars=False).partition("=")
                env[name] = val
    assert {k: env[k] for k in plan.env} == plan.env
    assert env["PYTHONUNBUFFERED"] == "1"


# ------------------------------------------------------------------------------------ the tier


@settings(SETTINGS, max_examples=int(os.environ.get("HOSTILE_EXAMPLES", "40")) * 8)
@given(model=any_text, served=any_text, parser=any_text, env_a=any_text, env_b=any_text, extra=any_text)
@example(model="Qwen/x\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: pwn}\n", served="s", parser="hermes",
         env_a="a", env_b="b", extra="x")
@example(model="m", served="s", parser="hermes", env_a="a\0b", env_b="b", extra="x")
@example(model="m", served="-x", parser="hermes", env_a="a", env_b="b", extra="x")
@example(model="m", served="s", parser="h\u2028", env_a="a", env_b="b", extra="x")
@example(model="m", served="s", parser="hermes", env_a="a", env_b="b", extra="x\x1b[2J")
def test_validation_refuses_exactly_what_cannot_be_quoted(model, served, parser, env_a, env_b, extra):
    data, refused = hostile_preset(model, served, parser, env_a, env_b, extra, "cuda", nodes=1)
    try:
        Preset.model_validate(data)
    except ValidationError as exc:
        event("refused at validation")
        assert refused, f"refused a preset every format can carry: {exc}"
        assert {str(e["loc"][0]) for e in exc.errors()} <= {"model", "served_model_name", "tool_calling",
                                                             "env", "extra_args"}
        return
    event("accepted")
    assert not refused, f"accepted a preset with unquotable text: {data!r}"


@SETTINGS
@given(model=quotable_text, served=quotable_text, parser=quotable_text, env_a=env_text, env_b=env_text,
       extra=quotable_text, device=st.sampled_from(["cuda", "cpu"]))
@example(model="m", served="s", parser="hermes", env_a="x\nExecStartPre=/bin/touch PWNED",
         env_b=f"$(touch {PWNED})`touch {PWNED}`%n$$", extra=f"';touch {PWNED};'", device="cuda")
@example(model=f"m$(touch {PWNED})", served="a;b", parser="%h%n", env_a="\u2028x\x85\r", env_b="50%",
         extra="\\", device="cpu")
@example(model="/models/x y", served=";", parser="${HOME}", env_a="\n---\nkind: Pod\n", env_b="\\",
         extra="$$", device="cuda")
def test_single_node_formats_carry_hostile_text_exactly(model, served, parser, env_a, env_b, extra, device,
                                                        sandbox):
    data, refused = hostile_preset(model, served, parser, env_a, env_b, extra, device, nodes=1)
    assert not refused, data
    preset = Preset.model_validate(data)
    check_shell_and_json(preset, sandbox)
    check_docker(preset, sandbox)
    check_compose(preset)
    check_k8s(preset)
    check_systemd(preset, sandbox)


@settings(SETTINGS, max_examples=max(5, int(os.environ.get("HOSTILE_EXAMPLES", "40")) // 2))
@given(model=quotable_text, served=quotable_text, env_a=env_text, extra=quotable_text)
@example(model=f"m$(touch {PWNED})", served="x'y", env_a=f"`touch {PWNED}`\n", extra="$(LWS_LEADER_ADDRESS)")
def test_multi_node_formats_carry_hostile_text_exactly(model, served, env_a, extra, sandbox):
    data, refused = hostile_preset(model, served, "hermes", env_a, "b", extra, "cuda", nodes=2)
    assert not refused
    preset = Preset.model_validate(data)
    check_lws(preset, sandbox)
    check_ray(preset, sandbox)


# ------------------------------------------------------------------------- fixed regressions


def test_a_newline_in_the_model_cannot_inject_a_pod(tmp_path):
    """The case from the report: `render --format k8s | kubectl apply -f -` must never create a Pod."""
    from vllm_launcher.base.errors import ConfigError
    from vllm_launcher.preset.schema import resolve

    bad = tmp_path / "evil.yaml"
    bad.write_text('model: "Qwen/x\\n---\\napiVersion: v1\\nkind: Pod\\nmetadata: {name: pwn}\\n"\n')
    with pytest.raises(ConfigError, match=r"evil\.yaml:1: model: contains the control character U\+000A"):
        resolve(str(bad))


def test_plain_ray_head_script_passes_bash_n(tmp_path):
    from vllm_launcher.preset.schema import resolve

    for name, text in render("ray", resolve("llama-70b-2x8")).items():
        path = tmp_path / name
        path.write_text(text)
        for shell in ("bash", "sh"):
            result = subprocess.run([shell, "-n", str(path)], capture_output=True, text=True, check=False)
            assert result.returncode == 0, (shell, name, result.stderr)


def test_comment_headers_carry_no_raw_preset_text():
    preset = Preset.model_validate({"name": "c", "model": "org/m x#'\"\\%$`", "device": "cuda"})
    for fmt in ("docker", "compose", "k8s", "systemd"):
        for text in render(fmt, preset).values():
            comments = [line for line in text.splitlines() if line.startswith("#")]
            assert comments and all("x#'\"\\%$`" not in line for line in comments), (fmt, comments)
        assert any('"org/m x#\'\\"\\\\%$`"' in line
                   for line in as_text(render(fmt, preset)).splitlines()), fmt


def test_export_options_refuse_what_their_formats_cannot_quote():
    from vllm_launcher.base.errors import ConfigError
    from vllm_launcher.exporters.options import make_options

    for option, value in [("hf_cache_path", "/data:/etc"), ("hf_cache_path", "/a\nb"),
                          ("env_file", "/etc/x y"), ("env_file", "/etc/x\nExecStartPre=/bin/sh"),
                          ("image", "img\x00"), ("image", "a b"), ("weights_gib", float("inf")),
                          ("weights_gib", float("nan")), ("replicas", 10**9), ("startup_timeout_s", 10**12)]:
        with pytest.raises(ConfigError):
            make_options(**{option: value})


def test_unit_decoder_rejects_what_systemd_rejects(tmp_path):
    """The decoder above must not be more lenient than systemd: an unknown escape fails both."""
    with pytest.raises(AssertionError):
        systemd_words('"a\\qb"')
    unit = tmp_path / "t.service"
    unit.write_text(f'[Service]\nType=exec\nExecStart={shlex.quote(sys.executable)} "a\\qb"\n')
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True,
                            check=False)
    assert verify.returncode != 0 or verify.stderr.strip()
