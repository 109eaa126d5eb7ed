"""`down` and `logs` against what a careful tool must survive: a records directory that turned read-only,
damaged or forged records, large logs. The fake vLLM and the real CLI in subprocesses.

The read-only test mounts a tmpfs over the records directory and remounts it read-only (root or
CAP_SYS_ADMIN, which CI has; it fails loudly without).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import cli, port_is_free, record_json, tagged_processes, wait_for, write_preset


def records_dir(env: dict[str, str]) -> Path:
    return Path(env["XDG_STATE_HOME"]) / "vllm-launch" / "servers"


def logs_dir(env: dict[str, str]) -> Path:
    return Path(env["XDG_STATE_HOME"]) / "vllm-launch" / "logs"


def mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.fail(f"mount {' '.join(args)} failed (this test needs root or CAP_SYS_ADMIN): "
                    f"{done.stderr.strip()}")


@pytest.fixture
def records_tmpfs(fake_env):
    directory = records_dir(fake_env)
    directory.mkdir(parents=True, exist_ok=True)
    mount("-t", "tmpfs", "-o", "size=16m", "tmpfs", str(directory))
    yield directory
    subprocess.run(["umount", "-l", str(directory)], capture_output=True, check=False)


def test_down_with_a_read_only_records_directory_stops_and_says_so_in_one_line(fake_env, tag, port,
                                                                               records_tmpfs):
    write_preset(fake_env, "rofs", port)
    assert cli(["up", "rofs", "--detach"], fake_env).returncode == 0
    assert tagged_processes(tag)
    mount("-o", "remount,ro", str(records_tmpfs))
    down = cli(["down", "rofs"], fake_env)
    assert "Traceback" not in down.stderr + down.stdout, down.stderr
    assert down.returncode == 1
    lines = down.stderr.strip().splitlines()
    assert len(lines) == 1, down.stderr
    assert lines[0].startswith("vllm-launch: error: stopped rofs (")
    assert f"port {port} is free, but cannot remove its record {records_tmpfs / 'rofs.json'}" in lines[0]
    assert "Read-only file system" in lines[0]
    wait_for(lambda: not tagged_processes(tag), timeout_s=10)  # the processes are stopped all the same
    assert port_is_free(port)
    # Writable again: the next `down` removes what is left.
    mount("-o", "remount,rw", str(records_tmpfs))
    again = cli(["down", "rofs"], fake_env)
    assert again.returncode == 0, again.stderr
    assert record_json(fake_env, "rofs") is None


SECRET = "root:$6$not-for-your-eyes"


def outside_file(tmp_path: Path) -> Path:
    path = tmp_path / "shadow"
    path.write_text(f"{SECRET}\n")
    return path


def test_logs_of_a_damaged_record_never_follows_its_log_path(fake_env, tmp_path):
    target = outside_file(tmp_path)
    directory = records_dir(fake_env)
    directory.mkdir(parents=True, exist_ok=True)
    # `status` shows this one as corrupt (port is not a number); its log_path is well-typed and kept.
    (directory / "forged.json").write_text(json.dumps({"name": "forged", "port": "eighty",
                                                       "log_path": str(target)}))
    assert json.loads(cli(["status", "--json"], fake_env).stdout)[0]["state"] == "corrupt"
    logs = cli(["logs", "forged", "-n", "100"], fake_env)
    assert SECRET not in logs.stdout + logs.stderr
    assert logs.returncode == 1
    assert "Traceback" not in logs.stderr
    assert logs.stderr.count("\n") == 1 and "the record of forged is damaged" in logs.stderr
    assert "down forged" in logs.stderr
    # Its own log (logs/forged.log), if there is one, is what it shows.
    logs_dir(fake_env).mkdir(parents=True, exist_ok=True)
    (logs_dir(fake_env) / "forged.log").write_text("INFO our own line\n")
    own = cli(["logs", "forged"], fake_env)
    assert own.stdout == "INFO our own line\n" and own.returncode == 1


def test_logs_reads_only_files_in_its_own_logs_directory(fake_env, tmp_path, port):
    from vllm_launcher.machine import records
    from vllm_launcher.preset.schema import resolve
    from vllm_launcher.supervise.claim import make_record

    target = outside_file(tmp_path)
    write_preset(fake_env, "valid", port)
    record = make_record(resolve("valid"))
    record.log_path = str(target)  # a well-formed record that names a file elsewhere
    records.write(record)
    logs = cli(["logs", "valid"], fake_env)
    assert SECRET not in logs.stdout + logs.stderr and logs.returncode == 1
    assert f"names a log outside {logs_dir(fake_env)}" in logs.stderr
    # A link in our logs directory that leads out of it is not followed either.
    logs_dir(fake_env).mkdir(parents=True, exist_ok=True)
    (logs_dir(fake_env) / "linked.log").symlink_to(target)
    linked = cli(["logs", "linked"], fake_env)
    assert SECRET not in linked.stdout + linked.stderr and linked.returncode == 1


def test_logs_n_prints_that_many_lines_of_a_large_log(fake_env):
    logs_dir(fake_env).mkdir(parents=True, exist_ok=True)
    lines = [f"INFO 12-07 10:00:00 [worker.py:{i}] step {i} " + "x" * 120 for i in range(30_000)]  # ~4.5 MB
    (logs_dir(fake_env) / "big.log").write_text("\n".join(lines) + "\n")
    shown = cli(["logs", "big", "-n", "5000"], fake_env)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines() == lines[-5000:]
    everything = cli(["logs", "big", "-n", "100000"], fake_env)
    assert everything.stdout.splitlines() == lines
