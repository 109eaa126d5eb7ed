"""Which vLLM a preset's `python:` has, with two real virtualenvs on one base Python (python -m venv
--without-pip): every venv's python is a symlink to the same base binary, so an interpreter is told apart
by its prefix (pyvenv.cfg), not by the binary it resolves to. Doctor's VL302 used to ask its own process
for any venv on the same base Python as its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vllm_launcher.doctor.engine import check_preset
from vllm_launcher.machine import system
from vllm_launcher.machine.hardware import Hardware
from vllm_launcher.preset.schema import Preset


def _venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
    return path / "bin" / "python"


def _fake_vllm(python: Path, version: str) -> Path:
    """A `vllm` package with its metadata in the venv's own site-packages (what `pip install vllm` leaves
    for the probe to read: it never imports vllm)."""
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True, timeout=60).stdout.strip()
    package = Path(site) / "vllm"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('the probe must not import vllm')\n")
    info = Path(site) / f"vllm-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}\n")
    return package


@pytest.fixture(scope="module")
def venvs(tmp_path_factory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("venvs")
    with_vllm, without = _venv(root / "with-vllm"), _venv(root / "without")
    package = _fake_vllm(with_vllm, "0.30.0")
    return with_vllm, without, package


def test_two_venvs_on_one_base_python_are_two_interpreters(venvs):
    with_vllm, without, _ = venvs
    assert os.path.realpath(with_vllm) == os.path.realpath(without)  # the case: one base binary
    assert system.interpreter_prefix(str(with_vllm)) == os.path.realpath(with_vllm.parent.parent)
    assert system.interpreter_prefix(str(without)) == os.path.realpath(without.parent.parent)
    assert not system.same_interpreter(str(with_vllm), str(without))
    assert system.same_interpreter(str(with_vllm), str(with_vllm.parent / "python3"))  # one venv, two names
    assert system.interpreter_prefix(sys.executable) == os.path.realpath(sys.prefix)


def test_each_venv_is_asked_about_its_own_vllm(venvs):
    with_vllm, without, package = venvs
    mine = system.vllm_info(str(with_vllm))
    assert (mine.distribution, mine.version, mine.checked) == ("vllm", "0.30.0", True)
    assert mine.package_dir is not None and Path(mine.package_dir) == package
    other = system.vllm_info(str(without))
    assert other.checked and not other.installed  # not this process's vLLM, whatever it has
    assert system.vllm_info(sys.executable) == system.vllm_info()  # our own: looked up here


def test_doctor_finds_the_vllm_of_the_presets_venv(venvs):
    with_vllm, without, _ = venvs
    hardware = Hardware(cpu_logical=4, ram_total_bytes=64 << 30, ram_available_bytes=60 << 30)

    def codes(python: Path) -> dict[str, str]:
        preset = Preset(name="venv", model="vllm-launch/tiny-qwen2", device="cpu", kv_cache_space_gib=1,
                        python=str(python))
        return {f.code: f.message for f in check_preset(preset, hardware)}

    assert "VL302" not in codes(with_vllm)  # it has vLLM (VL302 said "not installed" before)
    assert f"vLLM is not installed for {without}" in codes(without)["VL302"]
