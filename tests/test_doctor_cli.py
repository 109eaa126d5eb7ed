"""`vllm-launch doctor` end to end, in a subprocess with isolated XDG directories."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.cli_helpers import REPO, isolated_env, run_cli, user_presets_dir

HARDWARE = str(REPO / "tests" / "fixtures" / "hardware" / "cpu-2core-24gib.json")


def findings(stdout: str) -> list[dict]:
    return json.loads(stdout)["findings"]


def test_all_presets_against_a_saved_probe(tmp_path):
    env = isolated_env(tmp_path)
    done = run_cli(["doctor", "--hardware", HARDWARE, "--json"], env)
    found = findings(done.stdout)
    by_preset = {f["preset"] for f in found}
    assert {"cpu-test", "gpu-7b", None} <= by_preset
    # This probe's NUMA node 0 cannot hold vLLM's default CPU KV reservation after loading
    # (as `estimate` says).
    assert [f["severity"] for f in found if f["code"] == "VL205" and f["preset"] == "cpu-test"] == ["error"]
    assert done.returncode == (1 if any(f["severity"] == "error" for f in found) else 0)
    for f in found:
        assert set(f) == {"code", "severity", "preset", "message", "fix"}


def test_estimate_and_doctor_agree_on_the_same_probe(tmp_path):
    """Both commands on one saved probe: doctor finds an error exactly when estimate says DOES NOT FIT, and
    VL205 repeats the estimate's reason and fix word for word."""
    env = isolated_env(tmp_path)
    for name in ("cpu-test", "cpu-16k"):
        for extra in ([], ["--kv-cache", "1"]):
            est = run_cli(["estimate", name, "--hardware", HARDWARE, "--json", *extra], env)
            doc = run_cli(["doctor", name, "--hardware", HARDWARE, "--json", *extra], env)
            verdict = json.loads(est.stdout)
            errors = [f for f in findings(doc.stdout) if f["severity"] == "error"]
            assert (est.returncode == 1) == (doc.returncode == 1) == bool(errors) == (not verdict["fits"]), (
                name, extra, est.stdout, doc.stdout)
            for f in errors:
                if f["code"] == "VL205":
                    assert f["message"] in verdict["reasons"]
                    assert any(fix in f["fix"] for fix in verdict["fixes"])


def test_an_error_exits_1(tmp_path):
    env = isolated_env(tmp_path)
    done = run_cli(["doctor", "cpu-test", "--kv-cache", "1", "--max-num-batched-tokens", "1024",
                    "--set", "enable_chunked_prefill=false", "--hardware", HARDWARE], env)
    assert done.returncode == 1
    assert "ERROR VL101" in done.stdout and "max_num_batched_tokens: 2048" in done.stdout


def test_a_good_preset_exits_0_and_the_report_is_grouped(tmp_path):
    env = isolated_env(tmp_path)
    done = run_cli(["doctor", "cpu-test", "--kv-cache", "1", "--port", "1", "--hardware", HARDWARE], env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("no problems found") or "== cpu-test" in done.stdout


def test_a_broken_user_preset_is_a_finding_not_a_crash(tmp_path):
    env = isolated_env(tmp_path)
    (user_presets_dir(env) / "broken.yaml").write_text("model: m\nmax_model_len: -3\n")
    done = run_cli(["doctor", "--hardware", HARDWARE, "--json"], env)
    broken = [f for f in findings(done.stdout) if f["preset"] == "broken"]
    assert broken[0]["code"] == "VL100" and "max_model_len" in broken[0]["message"]


def test_usage_errors_exit_2_without_traceback(tmp_path):
    env = isolated_env(tmp_path)
    for args in (["doctor", "no-such-preset"],
                 ["doctor", "cpu-test", "--hardware", str(tmp_path / "nope.json")]):
        done = run_cli(args, env)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr


def test_log_findings_are_grouped_under_the_log_file(tmp_path):
    env = isolated_env(tmp_path)
    log = str(REPO / "tests" / "fixtures" / "vllm_logs" / "port_in_use.log")
    done = run_cli(["doctor", "--log", log], env)
    assert f"== log {log}" in done.stdout and "== environment" not in done.stdout, done.stdout


def test_a_malformed_endpoint_is_a_usage_error(tmp_path):
    env = isolated_env(tmp_path)
    for url in ("notaurl", "ftp://127.0.0.1:8000", "http://", "http://127.0.0.1:99999", "127.0.0.1:8000"):
        done = run_cli(["doctor", "--endpoint", url], env)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1, (url, done.stdout, done.stderr)
        assert "--endpoint" in lines[0] and "http://HOST:PORT" in lines[0] and "VL401" not in done.stdout


def test_list_prints_the_registry(tmp_path):
    env = isolated_env(tmp_path)
    done = run_cli(["doctor", "--list"], env)
    assert done.returncode == 0
    for code in ("VL101", "VL205", "VL301", "VL406", "VL504"):
        assert code in done.stdout
    rules = json.loads(run_cli(["doctor", "--list", "--json"], env).stdout)["rules"]
    assert len({r["code"] for r in rules}) == len(rules)


def test_list_names_every_code_the_package_can_emit(tmp_path):
    """--list runs in a fresh process: a code registered only where a finding is made (doctor.engine) would be
    missing. Every "VLnnn" string in the package is a code something can emit or skip."""
    import re

    emitted = set()
    for path in (REPO / "vllm_launcher").rglob("*.py"):
        emitted |= set(re.findall(r'"(VL\d{3})"', path.read_text(encoding="utf-8")))
    listed = {r["code"] for r in
              json.loads(run_cli(["doctor", "--list", "--json"], isolated_env(tmp_path)).stdout)["rules"]}
    assert {"VL100", "VL190", "VL205", "VL412"} <= emitted
    assert emitted - listed == set()


WRAPPER = """
import sys
from vllm_launcher.cli import main
try:
    main(["doctor", "--json"])
except SystemExit:
    pass
heavy = sorted(m for m in ("torch", "vllm", "transformers") if m in sys.modules)
print("HEAVY=" + ",".join(heavy), file=sys.stderr)
"""


def test_doctor_on_this_machine_imports_no_torch_vllm_or_transformers(tmp_path):
    env = isolated_env(tmp_path)
    done = subprocess.run([sys.executable, "-c", WRAPPER], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert "HEAVY=\n" in done.stderr, done.stderr
    assert findings(done.stdout)  # it did run over the presets and the environment
