"""`doctor.preflight_errors`: the doctor errors `vllm-launch up` refuses with (unless --force), checked
against the fake vLLM (tests/fake_vllm) through the real CLI."""

from __future__ import annotations

import pytest
from conftest import FAKE_VLLM_DIR, cli, port_is_free, tagged_processes, wait_for, write_preset

from vllm_launcher.doctor.preflight import preflight_errors
from vllm_launcher.preset.schema import Preset

# kv_cache_space_gib: a CPU preset without it trips VL205 when this machine's memory is short (vLLM's
# default reservation), which is not what these tests are about.
KV = {"kv_cache_space_gib": 1}


@pytest.fixture(autouse=True)
def importable_vllm(monkeypatch):
    """The fake vLLM package importable in this process (as the CLI tests have it on PYTHONPATH), so that
    these checks do not depend on whether the real one is installed (VL302)."""
    from vllm_launcher.machine import system

    monkeypatch.syspath_prepend(str(FAKE_VLLM_DIR))
    monkeypatch.setenv("PYTHONPATH", str(FAKE_VLLM_DIR))
    system._vllm_here_cached.cache_clear()
    yield
    system._vllm_here_cached.cache_clear()


def test_preflight_errors_are_one_line_each_with_code_and_fix(port):
    preset = Preset(name="p", model="fake/p", device="cpu", port=port, max_num_batched_tokens=8,
                    max_num_seqs=256, **KV)
    errors = preflight_errors(preset)
    assert [e.split(" ", 1)[0] for e in errors] == ["VL102"]
    assert "max_num_batched_tokens" in errors[0] and " — fix: " in errors[0] and "\n" not in errors[0]
    assert preflight_errors(preset.model_copy(update={"max_num_batched_tokens": 256})) == []
    assert preflight_errors(preset, skip=["VL102"]) == []


def test_preflight_reports_the_port_and_a_gpu_preset_without_gpu(port):
    import socket

    preset = Preset(name="p", model="fake/p", device="cpu", port=port, **KV)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        assert [e.split(" ", 1)[0] for e in preflight_errors(preset)] == ["VL301"]
        assert preflight_errors(preset, skip=["VL301"]) == []
    # No GPU here: `doctor` warns (VL108), a launch here is refused.
    gpu = Preset(name="g", model="fake/g", device="cuda", port=port)
    assert [e.split(" ", 1)[0] for e in preflight_errors(gpu)] == ["VL108"]


def test_up_refuses_a_doctor_error_and_force_starts_it(fake_env, port, tag):
    write_preset(fake_env, "tight", port, max_num_batched_tokens=8, max_num_seqs=256)
    dry = cli(["up", "tight", "--dry-run"], fake_env)
    assert dry.returncode == 1
    assert "# pre-flight: would refuse:" in dry.stdout and "#   - VL102 " in dry.stdout
    refused = cli(["up", "tight", "--detach"], fake_env)
    assert refused.returncode == 1
    lines = [ln for ln in refused.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "not starting tight: VL102 max_num_batched_tokens" in lines[0], refused.stderr
    assert "--force" in lines[0] and "Traceback" not in refused.stderr
    assert not tagged_processes(tag)  # nothing was spawned
    forced = cli(["up", "tight", "--detach", "--force"], fake_env)
    assert forced.returncode == 0, forced.stderr
    assert "warning: VL102 " in forced.stderr and "starting anyway" in forced.stderr
    down = cli(["down", "tight"], fake_env)
    assert down.returncode == 0, down.stderr
    wait_for(lambda: not tagged_processes(tag), timeout_s=10)
    assert port_is_free(port)


def test_memory_findings_are_reported_once(fake_env, port, tmp_path):
    """The fit verdict comes from doctor's memory rules only: a KV space above node 0's memory gives one
    line (VL203), not a doctor line plus an estimate line."""
    write_preset(fake_env, "huge", port, kv_cache_space_gib=4096)
    dry = cli(["up", "huge", "--dry-run"], fake_env)
    assert dry.returncode == 1
    reasons = [ln for ln in dry.stdout.splitlines() if ln.startswith("#   - ")]
    assert len(reasons) == 1 and reasons[0].startswith("#   - VL203 KV space 4096 GiB"), dry.stdout
