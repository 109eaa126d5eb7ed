"""Exporters: every built-in preset in every format that applies to it, checked by real validators
(Kubernetes API schemas from kubernetes-validate, `sh -n`, `systemd-analyze verify`), YAML parsing, shlex,
golden files (UPDATE_GOLDEN=1 rewrites them), and the secrets-by-name rule with a real script run."""

from __future__ import annotations

import math
import os
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from vllm_launcher.base import paths
from vllm_launcher.base.errors import ConfigError
from vllm_launcher.exporters import (
    EXPORTERS,
    FORMATS,
    applicable_formats,
    as_text,
    common,
    render,
    write_files,
)
from vllm_launcher.exporters.options import ExportOptions, make_options
from vllm_launcher.preset.schema import Preset, resolve

GOLDEN = Path(__file__).parent / "golden" / "exporters"
BUILTIN = sorted(p.stem for p in paths.builtin_presets_dir().glob("*.yaml"))
K8S_VERSION = kubernetes_validate.latest_version()
GOLDEN_PYTHON = "/opt/vllm/bin/python"  # systemd goldens must not depend on this machine's interpreter


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No user presets and an empty Hugging Face cache: sizes come from the built-in catalog only."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))


def preset_for_systemd(name: str, python: str = sys.executable) -> Preset:
    # systemd-analyze verify checks that ExecStart's program exists: use this interpreter there.
    return resolve(name).preset.model_copy(update={"python": python})


# ------------------------------------------------------------------------------------- validators


def k8s_docs(text: str) -> list[dict]:
    docs = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    assert docs, "no YAML documents"
    return docs


def validate_k8s_object(obj: dict) -> None:
    # strict: unknown fields are errors, as the API server's strict field validation.
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def docker_words(script: str) -> list[str]:
    command = script.split("exec ", 1)[1].replace("\\\n", " ")
    return shlex.split(command)


def option_value(words: list[str], flag: str) -> str:
    return words[words.index(flag) + 1]


def check_shell_syntax(script: str, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text(script)
    result = subprocess.run(["sh", "-n", str(path)], check=False, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def check_docker(preset: Preset, files: dict[str, str], tmp_path: Path) -> None:
    assert list(files) == ["run.sh"]
    script = files["run.sh"]
    check_shell_syntax(script, tmp_path, "run.sh")
    words = docker_words(script)
    assert words[:2] == ["docker", "run"]
    gpus = (preset.tensor_parallel_size or 1) * (preset.pipeline_parallel_size or 1)
    assert option_value(words, "-p").endswith(f"{preset.port}:{preset.port}")
    assert option_value(words, "-v") == "~/.cache/huggingface:/root/.cache/huggingface"
    assert option_value(words, "-e") == "HF_TOKEN"
    image_at = words.index("--model") - 1
    if preset.device == "cuda":
        assert option_value(words, "--gpus") == str(gpus)
        assert "--ipc=host" in words
        assert words[image_at] == "vllm/vllm-openai:latest"
    else:
        assert "--gpus" not in words
        assert words[image_at] == "vllm/vllm-openai-cpu:latest-x86_64"
        kv = preset.kv_cache_space_gib or common.DEFAULT_CPU_KV_CACHE_GIB
        assert f"VLLM_CPU_KVCACHE_SPACE={kv}" in words
    vllm_args = words[image_at + 1:]
    assert vllm_args[:2] == ["--model", preset.model]
    assert option_value(vllm_args, "--host") == "0.0.0.0"
    assert option_value(vllm_args, "--port") == str(preset.port)
    if preset.tool_calling.enabled:
        assert "--enable-auto-tool-choice" in vllm_args
        assert option_value(vllm_args, "--tool-call-parser") == preset.tool_calling.parser


def check_compose(preset: Preset, files: dict[str, str], tmp_path: Path) -> None:
    assert list(files) == ["compose.yaml"]
    data = yaml.safe_load(files["compose.yaml"])
    (name, service), = data["services"].items()
    assert name != "vllm"
    assert service["command"][:2] == ["--model", preset.model]
    assert option_value(service["command"], "--host") == "0.0.0.0"
    assert service["ports"][0].endswith(f"{preset.port}:{preset.port}")
    assert "/health" in " ".join(service["healthcheck"]["test"])
    assert service["healthcheck"]["start_period"].endswith("s")
    assert "HF_TOKEN" in service["environment"]
    if preset.device == "cuda":
        device = service["deploy"]["resources"]["reservations"]["devices"][0]
        assert device == {"driver": "nvidia", "count": common.gpu_count(preset), "capabilities": ["gpu"]}
        assert service["ipc"] == "host"
    else:
        assert "deploy" not in service
        assert "VLLM_CPU_KVCACHE_SPACE" in service["environment"]


def pod_container(template: dict) -> dict:
    (container,) = template["spec"]["containers"]
    return container


def check_pod_template(preset: Preset, template: dict, gpus: int) -> None:
    """What every vLLM pod needs: whole GPUs, /dev/shm in memory, no service links, secrets by ref."""
    spec = template["spec"]
    assert spec["enableServiceLinks"] is False
    container = pod_container(template)
    limits = container["resources"].get("limits", {})
    if preset.device == "cuda":
        assert limits["nvidia.com/gpu"] == gpus and isinstance(limits["nvidia.com/gpu"], int)
    else:
        assert "nvidia.com/gpu" not in limits
    assert container["resources"]["requests"]["memory"].endswith("Gi")
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
    assert mounts["/root/.cache/huggingface"] in volumes
    env = {e["name"]: e for e in container["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "HF_TOKEN"
    assert all("value" not in e for name, e in env.items() if name in ("HF_TOKEN", "VLLM_API_KEY"))
    # The pod spec is a real PodTemplate (strict schema) even inside a LeaderWorkerSet.
    validate_k8s_object({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"},
                         "template": template})


def check_k8s(preset: Preset, files: dict[str, str], tmp_path: Path) -> None:
    assert list(files)[:2] == ["deployment.yaml", "service.yaml"]
    docs = k8s_docs(as_text(files))  # stdout form: one multi-document stream
    assert len(docs) == len(files)
    for doc in docs:
        validate_k8s_object(doc)
    deployment, service = docs[0], docs[1]
    assert deployment["kind"] == "Deployment" and service["kind"] == "Service"
    assert service["metadata"]["name"] != "vllm"
    template = deployment["spec"]["template"]
    check_pod_template(preset, template, common.gpu_count(preset))
    container = pod_container(template)
    assert container["command"] == ["vllm", "serve"]
    assert container["args"][0] == preset.model
    assert option_value(container["args"], "--host") == "0.0.0.0"
    assert container["ports"][0]["containerPort"] == preset.port
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    startup = container["startupProbe"]
    assert startup["httpGet"]["path"] == "/health"
    budget = common.sizing(preset, ExportOptions()).startup_s
    assert startup["failureThreshold"] * startup["periodSeconds"] >= budget >= 600
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/health"


# LeaderWorkerSet has no schema in kubernetes-validate (it is a CRD). These are the fields vLLM's LWS
# example (docs/deployment/frameworks/lws.md) sets, with the values that matter; the pod templates are
# checked against the real PodTemplate schema above.
LWS_EXAMPLE_FIELDS = {
    ("apiVersion",): "leaderworkerset.x-k8s.io/v1",
    ("kind",): "LeaderWorkerSet",
    ("metadata", "name"): None,
    ("spec", "replicas"): None,
    ("spec", "leaderWorkerTemplate", "size"): None,
    ("spec", "leaderWorkerTemplate", "restartPolicy"): "RecreateGroupOnPodRestart",
    ("spec", "leaderWorkerTemplate", "leaderTemplate", "metadata", "labels", "role"): "leader",
    ("spec", "leaderWorkerTemplate", "leaderTemplate", "spec", "containers"): None,
    ("spec", "leaderWorkerTemplate", "workerTemplate", "spec", "containers"): None,
}
# Keys the LeaderWorkerSet v1 API accepts at each level above the pod templates.
LWS_API_KEYS = {
    (): {"apiVersion", "kind", "metadata", "spec"},
    ("spec",): {"replicas", "leaderWorkerTemplate", "rolloutStrategy", "startupPolicy", "networkConfig"},
    ("spec", "leaderWorkerTemplate"): {"size", "restartPolicy", "leaderTemplate", "workerTemplate",
                                       "subGroupPolicy"},
}


def get_path(obj: dict, path: tuple[str, ...]):
    for key in path:
        obj = obj[key]
    return obj


def check_lws(preset: Preset, files: dict[str, str], tmp_path: Path, mode: str = "ray") -> None:
    assert list(files) == ["lws.yaml", "service.yaml"]
    lws, service = k8s_docs(as_text(files))
    for path, expected in LWS_EXAMPLE_FIELDS.items():
        value = get_path(lws, path)
        if expected is not None:
            assert value == expected, path
    for path, allowed in LWS_API_KEYS.items():
        assert set(get_path(lws, path)) <= allowed, path
    validate_k8s_object(service)
    assert service["spec"]["selector"] == {"leaderworkerset.sigs.k8s.io/name": lws["metadata"]["name"],
                                           "role": "leader"}
    template = lws["spec"]["leaderWorkerTemplate"]
    assert template["size"] == preset.nodes
    gpus = preset.gpus_per_node
    assert gpus * preset.nodes == common.gpu_count(preset)
    leader, worker = template["leaderTemplate"], template["workerTemplate"]
    check_pod_template(preset, leader, gpus)
    check_pod_template(preset, worker, gpus)
    leader_c, worker_c = pod_container(leader), pod_container(worker)
    assert "startupProbe" in leader_c and "startupProbe" not in worker_c
    assert "VLLM_API_KEY" not in {e["name"] for e in worker_c["env"]}
    leader_cmd, worker_cmd = " ".join(leader_c["command"]), " ".join(worker_c["command"])
    tp_pp = (f"--tensor-parallel-size {preset.tensor_parallel_size} "
             f"--pipeline-parallel-size {preset.pipeline_parallel_size}")
    assert tp_pp in leader_cmd and "--host 0.0.0.0" in leader_cmd
    if mode == "ray":
        assert "multi-node-serving.sh leader" in leader_cmd and "$(LWS_GROUP_SIZE)" in leader_cmd
        assert "--distributed-executor-backend ray" in leader_cmd
        assert "multi-node-serving.sh worker --ray_address=$(LWS_LEADER_ADDRESS)" in worker_cmd
    else:
        assert "--nnodes $(LWS_GROUP_SIZE)" in leader_cmd and "--node-rank 0" in leader_cmd
        assert "--master-addr $(LWS_LEADER_ADDRESS)" in leader_cmd
        assert tp_pp in worker_cmd and "--node-rank $(LWS_WORKER_INDEX)" in worker_cmd
        assert worker_c["command"][-1] == "--headless" and "--headless" not in leader_cmd


def check_ray(preset: Preset, files: dict[str, str], tmp_path: Path) -> None:
    assert list(files) == ["ray-head.sh", "ray-worker.sh"]
    for name, script in files.items():
        check_shell_syntax(script, tmp_path, name)
    head, worker = files["ray-head.sh"], files["ray-worker.sh"]
    assert "ray start --head --port=6379" in head
    assert 'ray start --address="$HEAD_NODE_IP:6379"' in worker
    serve = shlex.split(head.split("exec ", 1)[1].replace("\\\n", " "))
    assert serve[:3] == ["vllm", "serve", preset.model]
    assert option_value(serve, "--tensor-parallel-size") == str(preset.gpus_per_node)
    assert option_value(serve, "--pipeline-parallel-size") == str(preset.nodes)
    assert option_value(serve, "--distributed-executor-backend") == "ray"


def check_systemd(preset: Preset, files: dict[str, str], tmp_path: Path) -> None:
    (name, unit), = files.items()
    assert name == f"vllm-{preset.name}.service"
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in unit.splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key, []).append(value)
    assert set(sections) == {"Unit", "Service", "Install"}
    service = sections["Service"]
    assert service["Restart"] == ["on-failure"]
    assert service["KillMode"] == ["control-group"]
    assert service["KillSignal"] == ["SIGINT"]
    assert int(service["TimeoutStartSec"][0]) == common.sizing(preset, ExportOptions()).startup_s
    assert service["EnvironmentFile"][0].lstrip("-") == f"/etc/vllm-launch/{preset.name}.env"
    assert (shlex.split(service["ExecStart"][0])[:3]
            == [preset.python, "-m", "vllm.entrypoints.openai.api_server"])
    assert "/health" in service["ExecStartPost"][0]
    if preset.device == "cpu" and preset.kv_cache_space_gib:
        assert f'"VLLM_CPU_KVCACHE_SPACE={preset.kv_cache_space_gib}"' in service["Environment"]
    tool = shutil.which("systemd-analyze")
    if tool:  # where the tool is installed, the unit must pass it
        path = tmp_path / name
        path.write_text(unit)
        result = subprocess.run([tool, "verify", str(path)], check=False, capture_output=True, text=True,
                                timeout=60)
        problems = [line for line in result.stderr.splitlines()
                    if line and "RestartSteps" not in line and "RestartMaxDelaySec" not in line]
        assert result.returncode == 0 and not problems, result.stderr


CHECKS = {"docker": check_docker, "compose": check_compose, "k8s": check_k8s, "lws": check_lws,
          "ray": check_ray, "systemd": check_systemd}


# ---------------------------------------------------------------------------------- every preset


def test_registry_lists_every_format():
    assert set(EXPORTERS) == set(FORMATS) == set(CHECKS)
    assert "llama-70b-2x8" in BUILTIN


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", BUILTIN)
def test_every_builtin_preset_renders_in_every_applicable_format(name, fmt, tmp_path):
    preset = preset_for_systemd(name) if fmt == "systemd" else resolve(name).preset
    if fmt not in applicable_formats(preset):
        with pytest.raises(ConfigError, match="--format"):
            render(fmt, resolve(name))
        return
    files = render(fmt, preset)
    assert files and all(text.endswith("\n") for text in files.values())
    CHECKS[fmt](preset, files, tmp_path)


def test_lws_native_mode_validates(tmp_path):
    preset = resolve("llama-70b-2x8").preset
    check_lws(preset, render("lws", preset, ExportOptions(lws_mode="native")), tmp_path, mode="native")


# -------------------------------------------------------------------------------------- goldens

GOLDEN_CASES = [
    ("gpu-7b", "docker", {}), ("gpu-7b", "compose", {}), ("gpu-7b", "k8s", {}), ("gpu-7b", "systemd", {}),
    ("cpu-16k", "docker", {}), ("cpu-16k", "compose", {}), ("cpu-16k", "k8s", {}), ("cpu-16k", "systemd", {}),
    ("llama-70b-2x8", "lws", {}), ("llama-70b-2x8", "lws", {"lws_mode": "native"}),
    ("llama-70b-2x8", "ray", {}),
]


@pytest.mark.parametrize(("name", "fmt", "options"), GOLDEN_CASES,
                         ids=[f"{n}-{f}{'-' + '-'.join(o.values()) if o else ''}"
                              for n, f, o in GOLDEN_CASES])
def test_golden(name, fmt, options):
    preset = resolve(name).preset
    if fmt == "systemd":
        preset = preset.model_copy(update={"python": GOLDEN_PYTHON})
    text = as_text(render(fmt, preset, ExportOptions(**options)))
    suffix = "".join(f".{v}" for v in options.values())
    path = GOLDEN / f"{name}.{fmt}{suffix}.txt"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.is_file(), f"missing golden {path} (run with UPDATE_GOLDEN=1 and review it)"
    assert text == path.read_text()


# -------------------------------------------------------------------------- layout and refusals


@pytest.mark.parametrize("fmt", ["docker", "compose", "k8s", "systemd"])
def test_single_node_formats_refuse_multi_node_presets_naming_the_file(fmt):
    with pytest.raises(ConfigError) as caught:
        render(fmt, resolve("llama-70b-2x8"))
    message = str(caught.value)
    assert "llama-70b-2x8.yaml" in message and "nodes:" in message
    assert "--format lws" in message and "--format ray" in message


@pytest.mark.parametrize("fmt", ["lws", "ray"])
def test_multi_node_formats_refuse_single_node_and_cpu_presets(fmt):
    with pytest.raises(ConfigError, match="runs on one machine"):
        render(fmt, resolve("gpu-7b"))
    cpu_spread = resolve("cpu-test").preset.model_copy(update={"nodes": 2})
    with pytest.raises(ConfigError, match="device: cuda"):
        render(fmt, cpu_spread)


def test_layout_must_multiply_out():
    bad = resolve("llama-70b-2x8").preset.model_copy(update={"gpus_per_node": 4})
    with pytest.raises(ConfigError, match=r"8 × 2 = 16 must equal nodes × gpus_per_node = 2 × 4 = 8"):
        render("lws", bad)
    inferred = resolve("llama-70b-2x8").preset.model_copy(update={"gpus_per_node": None})
    lws = k8s_docs(as_text(render("lws", inferred)))[0]
    assert pod_container(lws["spec"]["leaderWorkerTemplate"]["workerTemplate"])["resources"]["limits"] == {
        "nvidia.com/gpu": 8}
    uneven = inferred.model_copy(update={"nodes": 3})
    with pytest.raises(ConfigError, match="do not split evenly over 3 nodes"):
        render("ray", uneven)


def test_gpu_count_is_tp_times_pp_everywhere(tmp_path):
    preset = resolve("gpu-32b-tp2").preset.model_copy(update={"pipeline_parallel_size": 2})
    words = docker_words(render("docker", preset)["run.sh"])
    assert option_value(words, "--gpus") == "4"
    compose = yaml.safe_load(render("compose", preset)["compose.yaml"])
    assert (compose["services"]["gpu-32b-tp2"]["deploy"]["resources"]["reservations"]["devices"][0]["count"]
            == 4)
    deployment = k8s_docs(render("k8s", preset)["deployment.yaml"])[0]
    assert pod_container(deployment["spec"]["template"])["resources"]["limits"] == {"nvidia.com/gpu": 4}


# --------------------------------------------------------------------------------------- names


def test_service_is_never_named_vllm():
    preset = resolve("gpu-7b").preset.model_copy(update={"name": "vllm"})
    service = k8s_docs(render("k8s", preset)["service.yaml"])[0]
    assert service["metadata"]["name"] == "vllm-server"
    with pytest.raises(ConfigError, match="VLLM_PORT"):
        render("k8s", resolve("gpu-7b"), ExportOptions(name="vllm"))


def test_names_become_dns_labels():
    preset = resolve("gpu-7b").preset.model_copy(update={"name": "7B_Coder.v2"})
    deployment = k8s_docs(render("k8s", preset)["deployment.yaml"])[0]
    assert deployment["metadata"]["name"] == "vllm-7b-coder-v2"
    validate_k8s_object(deployment)


def test_bad_options_name_the_cli_option():
    with pytest.raises(ConfigError, match=r"^--name: .*DNS label"):
        make_options(name="Bad_Name")
    with pytest.raises(ConfigError, match=r"^--lws-mode: "):
        make_options(lws_mode="mpi")
    assert make_options(image_tag="v0.11.0", namespace=None).image_tag == "v0.11.0"


def test_unknown_format_is_a_config_error():
    with pytest.raises(ConfigError, match="valid formats: docker, compose, k8s, lws, ray, systemd"):
        render("helm", resolve("gpu-7b"))


# --------------------------------------------------------------------------------------- options


def test_image_options():
    gpu, cpu = resolve("gpu-7b").preset, resolve("cpu-16k").preset
    tagged = ExportOptions(image_tag="v0.11.0")
    assert "vllm/vllm-openai:v0.11.0" in docker_words(render("docker", gpu, tagged)["run.sh"])
    assert "vllm/vllm-openai-cpu:v0.11.0-arm64" in docker_words(
        render("docker", cpu, ExportOptions(image_tag="v0.11.0", cpu_arch="arm64"))["run.sh"])
    custom = ExportOptions(image="registry.example/vllm:dev")
    compose = yaml.safe_load(render("compose", gpu, custom)["compose.yaml"])
    assert compose["services"]["gpu-7b"]["image"] == "registry.example/vllm:dev"


def test_startup_budget_derives_from_weights_and_can_be_overridden():
    preset = resolve("gpu-7b").preset

    def startup(options: ExportOptions) -> dict:
        return pod_container(k8s_docs(render("k8s", preset, options)["deployment.yaml"])[0]["spec"]
                             ["template"])["startupProbe"]

    probe = startup(ExportOptions(weights_gib=50))
    expected_s = 60 * math.ceil((common.STARTUP_BASE_S + common.STARTUP_PER_WEIGHT_GIB_S * 50) / 60)
    assert probe["failureThreshold"] * probe["periodSeconds"] == expected_s == 1620
    assert startup(ExportOptions(startup_timeout_s=3600))["failureThreshold"] == 360
    bigger = common.sizing(resolve("llama-70b-2x8").preset, ExportOptions()).startup_s
    assert bigger > common.sizing(preset, ExportOptions()).startup_s


def test_unknown_model_gets_documented_defaults():
    preset = resolve("gpu-7b").preset.model_copy(update={"model": "acme/never-heard-of-it"})
    deployment = k8s_docs(render("k8s", preset)["deployment.yaml"])[0]
    container = pod_container(deployment["spec"]["template"])
    assert container["startupProbe"]["failureThreshold"] * 10 == common.DEFAULT_STARTUP_S
    assert container["resources"]["requests"]["memory"] == f"{common.DEFAULT_GPU_MEMORY_GIB}Gi"


def test_memory_request_sized_from_weights():
    preset = resolve("gpu-7b").preset
    small = k8s_docs(render("k8s", preset, ExportOptions(weights_gib=10))["deployment.yaml"])[0]
    large = k8s_docs(render("k8s", preset, ExportOptions(weights_gib=100))["deployment.yaml"])[0]
    memory = [pod_container(d["spec"]["template"])["resources"]["requests"]["memory"] for d in (small, large)]
    assert memory == ["18Gi", "108Gi"]


def test_hf_cache_options():
    preset = resolve("gpu-7b").preset
    hostpath = render("k8s", preset, ExportOptions(hf_cache_path="/data/hf"))
    assert "pvc.yaml" not in hostpath
    volumes = k8s_docs(hostpath["deployment.yaml"])[0]["spec"]["template"]["spec"]["volumes"]
    assert volumes[0]["hostPath"]["path"] == "/data/hf"
    existing = render("k8s", preset, ExportOptions(pvc="shared-models", namespace="llm"))
    assert "pvc.yaml" not in existing
    deployment = k8s_docs(existing["deployment.yaml"])[0]
    assert deployment["metadata"]["namespace"] == "llm"
    assert deployment["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == (
        "shared-models")
    own = k8s_docs(render("k8s", preset)["pvc.yaml"])[0]
    validate_k8s_object(own)
    words = docker_words(render("docker", preset, ExportOptions(hf_cache_path="/data/hf"))["run.sh"])
    assert option_value(words, "-v") == "/data/hf:/root/.cache/huggingface"


def test_published_port_follows_the_preset_host():
    preset = resolve("gpu-7b").preset
    assert option_value(docker_words(render("docker", preset)["run.sh"]), "-p") == "127.0.0.1:8000:8000"
    public = preset.model_copy(update={"host": "0.0.0.0", "port": 9000})
    words = docker_words(render("docker", public)["run.sh"])
    assert option_value(words, "-p") == "9000:9000"
    assert option_value(words, "--port") == "9000"


# --------------------------------------------------------------------------------------- secrets

SENTINEL_KEY = "sk-sentinel-api-key-0123456789"
SENTINEL_TOKEN = "hf_sentinel_token_0123456789"


def secret_preset() -> Preset:
    return resolve("gpu-7b").preset.model_copy(update={"api_key_env": "MY_API_KEY", "hf_token_env": "MY_HF"})


def test_secrets_are_never_values(monkeypatch):
    monkeypatch.setenv("MY_API_KEY", SENTINEL_KEY)
    monkeypatch.setenv("MY_HF", SENTINEL_TOKEN)
    preset = secret_preset()
    for fmt in ("docker", "compose", "k8s", "systemd"):
        text = as_text(render(fmt, preset))
        assert SENTINEL_KEY not in text and SENTINEL_TOKEN not in text
    compose = yaml.safe_load(render("compose", preset)["compose.yaml"])["services"]["gpu-7b"]
    assert compose["environment"]["VLLM_API_KEY"].startswith("${MY_API_KEY:?")
    assert compose["environment"]["HF_TOKEN"] == "${MY_HF:-}"
    container = pod_container(k8s_docs(render("k8s", preset)["deployment.yaml"])[0]["spec"]["template"])
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert refs["VLLM_API_KEY"] == {"name": "gpu-7b-secrets", "key": "VLLM_API_KEY"}  # required
    assert refs["HF_TOKEN"]["optional"] is True
    unit = render("systemd", preset)["vllm-gpu-7b.service"]
    assert "EnvironmentFile=/etc/vllm-launch/gpu-7b.env" in unit  # not optional: the key is in it


def fake_docker(tmp_path: Path) -> Path:
    """A `docker` that records its argv and environment instead of running anything."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "docker"
    script.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                      "json.dump({'argv': sys.argv[1:], 'env': dict(os.environ)}, "
                      f"open({str(tmp_path / 'docker-call.json')!r}, 'w'))\n")
    script.chmod(0o755)
    return bin_dir


def test_docker_script_passes_secrets_by_environment_only(tmp_path):
    import json

    written = write_files(render("docker", secret_preset()), tmp_path / "out")
    bin_dir = fake_docker(tmp_path)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path),
           "MY_API_KEY": SENTINEL_KEY, "MY_HF": SENTINEL_TOKEN}
    result = subprocess.run([str(written[0])], env=env, check=False, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    call = json.loads((tmp_path / "docker-call.json").read_text())
    assert SENTINEL_KEY not in " ".join(call["argv"]) and SENTINEL_TOKEN not in " ".join(call["argv"])
    assert call["env"]["VLLM_API_KEY"] == SENTINEL_KEY and call["env"]["HF_TOKEN"] == SENTINEL_TOKEN
    assert call["argv"][call["argv"].index("VLLM_API_KEY") - 1:][:2] == ["-e", "VLLM_API_KEY"]
    assert f"{tmp_path}/.cache/huggingface:/root/.cache/huggingface" in call["argv"]  # ~ expanded

    missing = {k: v for k, v in env.items() if k != "MY_API_KEY"}
    refused = subprocess.run([str(written[0])], env=missing, check=False, capture_output=True, text=True,
                             timeout=60)
    assert refused.returncode != 0 and "set MY_API_KEY" in refused.stderr


# ------------------------------------------------------------------------------------- output


def test_write_files_is_complete_and_scripts_are_executable(tmp_path):
    files = render("ray", resolve("llama-70b-2x8"))
    written = write_files(files, tmp_path / "deploy")
    assert [p.name for p in written] == ["ray-head.sh", "ray-worker.sh"]
    for path in written:
        assert path.read_text() == files[path.name]
        assert path.stat().st_mode & stat.S_IXUSR
    assert sorted(p.name for p in (tmp_path / "deploy").iterdir()) == ["ray-head.sh", "ray-worker.sh"]


def test_as_text_separates_several_files_and_keeps_one_as_is():
    single = render("docker", resolve("gpu-7b"))
    assert as_text(single) == single["run.sh"]
    several = as_text(render("k8s", resolve("gpu-7b")))
    assert several.startswith("# --- deployment.yaml\n") and "\n# --- service.yaml\n" in several


def test_rendering_imports_nothing_heavy():
    code = ("import sys\nfrom vllm_launcher.preset.schema import resolve\n"
            "from vllm_launcher.exporters import render\n"
            "for fmt in ('docker', 'compose', 'k8s', 'systemd'): render(fmt, resolve('gpu-7b'))\n"
            "for fmt in ('lws', 'ray'): render(fmt, resolve('llama-70b-2x8'))\n"
            "print(sorted(m for m in ('rich', 'httpx', 'torch', 'vllm', 'typer', 'transformers') "
            "if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_kubernetes_validator_rejects_a_wrong_field():
    deployment = k8s_docs(render("k8s", resolve("gpu-7b"))["deployment.yaml"])[0]
    deployment["spec"]["template"]["spec"]["enableServiceLink"] = False  # typo: not in the API
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_k8s_object(deployment)


# --------------------------------------------------------------------- doctor: multi-node rules


def multinode_hits(preset: Preset) -> dict[str, str]:
    from vllm_launcher.doctor import rules_multinode
    from vllm_launcher.doctor.findings import Facts

    facts = Facts(preset=preset)
    rules = {"VL120": rules_multinode.layout_multiplies_out, "VL121": rules_multinode.multinode_needs_gpus,
             "VL122": rules_multinode.tensor_parallel_within_node}
    return {code: hit.message for code, func in rules.items() if (hit := func(facts)) is not None}


def test_doctor_multinode_rules():
    llama = resolve("llama-70b-2x8").preset
    assert multinode_hits(llama) == {}
    assert multinode_hits(resolve("gpu-7b").preset) == {}
    wrong = multinode_hits(llama.model_copy(update={"gpus_per_node": 4}))
    assert (wrong.keys() == {"VL120"}
            and "8 x 2 = 16 must equal nodes x gpus_per_node = 2 x 4 = 8" in wrong["VL120"])
    spanning = multinode_hits(llama.model_copy(update={"tensor_parallel_size": 16,
                                                       "pipeline_parallel_size": 1}))
    assert spanning.keys() == {"VL122"}
    cpu = multinode_hits(resolve("cpu-test").preset.model_copy(update={"nodes": 2}))
    assert "VL121" in cpu
    one_node_too_many = multinode_hits(resolve("gpu-32b-tp2").preset.model_copy(update={"gpus_per_node": 1}))
    assert one_node_too_many.keys() == {"VL120"}


# ----------------------------------------------------------------------------------- render cache


def test_render_cache_matches_a_full_render_and_notices_edits(tmp_path, monkeypatch):
    from vllm_launcher.commands.presets import rendered_files as cached_render

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    user_dir = tmp_path / "config" / "vllm-launch" / "presets"
    user_dir.mkdir(parents=True)
    (user_dir / "mine.yaml").write_text("extends: gpu-7b\nport: 9001\n")
    options = {"image_tag": "v0.11.0", "namespace": None}
    first = cached_render("mine", [], "k8s", options)
    assert first == render("k8s", resolve("mine"), ExportOptions(image_tag="v0.11.0"))
    assert len(list((tmp_path / "cache" / "vllm-launch" / "renders").glob("*.json"))) == 1
    assert cached_render("mine", [], "k8s", options) == first
    (user_dir / "mine.yaml").write_text("extends: gpu-7b\nport: 9002\n")
    assert "containerPort: 9002" in cached_render("mine", [], "k8s", options)["deployment.yaml"]
    with pytest.raises(ConfigError, match="--format lws"):
        cached_render("llama-70b-2x8", [], "docker", {})


def test_render_cache_hit_loads_neither_pydantic_nor_yaml(tmp_path):
    code = ("import sys\nfrom vllm_launcher.commands.presets import rendered_files as cached_render\n"
            "files = cached_render('gpu-7b', [], 'compose', {})\n"
            "assert files['compose.yaml'].startswith('# vllm-launch render gpu-7b')\n"
            "print(sorted(m for m in ('pydantic', 'yaml') if m in sys.modules))\n")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "XDG_CONFIG_HOME": str(tmp_path / "config")}
    runs = [subprocess.run([sys.executable, "-c", code], env=env, check=False, capture_output=True, text=True,
                           timeout=120) for _ in range(2)]
    assert all(run.returncode == 0 for run in runs), runs[-1].stderr
    assert runs[0].stdout.strip() == "['pydantic', 'yaml']"  # a miss renders in full
    assert runs[1].stdout.strip() == "[]"
