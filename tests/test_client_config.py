"""The agent hand-off: the guide's profiles.yaml `vllm:` entry, printed by `up` and the gateway and written
with `--client-config FILE` (other profiles kept, a file a rewrite would damage refused before anything
starts, the write atomic)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from conftest import cli, free_port, write_preset
from hypothesis import given, settings
from hypothesis import strategies as st

from vllm_launcher.base.errors import ConfigError
from vllm_launcher.clients.agent_profile import (
    placed_profile,
    prepare_profile,
    profile_entry,
    profile_yaml,
    write_profile,
)

ENTRY = profile_entry("http://127.0.0.1:8000/v1", "cpu")

keys = st.text(min_size=1, max_size=12).filter(lambda k: k != "vllm")
values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                      lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                    max_size=3), max_leaves=8)


def test_the_entry_is_the_guides():
    assert yaml.safe_load(profile_yaml(ENTRY)) == {"vllm": {"base_url": "http://127.0.0.1:8000/v1",
                                                            "timeout": 300}}
    assert profile_entry("http://h:1/v1", "cuda")["timeout"] == 120


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(keys, values, max_size=5), st.text(max_size=40), st.booleans())
def test_only_the_vllm_block_changes(others, base_url, had_vllm):
    """Whatever the other profiles hold, their text stays byte for byte and the file reads back as them
    plus the entry (or is refused, never changed wrongly)."""
    existing = yaml.safe_dump({**others, **({"vllm": {"base_url": "old", "model": "m"}} if had_vllm else {})},
                              sort_keys=False, allow_unicode=True)
    entry = {"base_url": base_url, "timeout": 300}  # any text as the URL: the dumper quotes it
    try:
        placed = placed_profile(existing, entry, "p.yaml")
    except ConfigError:
        return
    expected = {**entry, "model": "m"} if had_vllm else entry  # the entry's own other keys are kept
    assert yaml.safe_load(placed) == {**yaml.safe_load(existing), "vllm": expected}
    if not had_vllm:
        assert placed.startswith(existing)


def test_comments_unicode_and_yaml_11_spellings_elsewhere_survive_untouched():
    existing = ("# my agent profiles\nopenai:\n  key_env: OPENAI_KEY  # never the key itself\n  on: yes\n"
                "  code: 012\nvllm:\n  base_url: http://old:1/v1\n  model: coder\n  timeout: 9\n"
                "local:\n  name: café 中文\n")
    placed = placed_profile(existing, ENTRY, "p.yaml")
    assert placed.startswith(existing[:existing.index("vllm:")])
    assert placed.endswith("local:\n  name: café 中文\n")
    assert yaml.safe_load(placed)["vllm"] == {"base_url": "http://127.0.0.1:8000/v1", "model": "coder",
                                              "timeout": 300}


@pytest.mark.parametrize(("text", "expected"), [
    ("vllm:\n  base_url: x  # mine\n", "has comments"), ("- a\n- b\n", "block mapping"),
    ("{a: 1}\n", "flow mapping"), ("a: [\n", "malformed YAML"), ("just text\n", "block mapping"),
    ("a: 1\na: 2\n", "duplicate key"), ("a: &x [1]\nb: *x\n", "aliases"),
    ("a: " + "[" * 40 + "]" * 40 + "\n", "nested more than"), ("a: 1\n...\n", "cannot place"),
    ("a: 1\n---\nb: 2\n", "malformed YAML")])
def test_a_file_a_rewrite_would_damage_is_refused_in_one_line(text, expected):
    with pytest.raises(ConfigError) as raised:
        placed_profile(text, ENTRY, "p.yaml")
    assert expected in str(raised.value) and "\n" not in str(raised.value), str(raised.value)


def test_symlinks_are_followed_loops_and_locked_directories_refused(tmp_path: Path):
    real = tmp_path / "dotfiles" / "profiles.yaml"
    real.parent.mkdir()
    real.write_text("openai:\n  model: gpt\n")
    link = tmp_path / "profiles.yaml"
    link.symlink_to(real)
    write_profile(prepare_profile(str(link), ENTRY))
    assert link.is_symlink() and yaml.safe_load(real.read_text())["vllm"] == ENTRY
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    with pytest.raises(ConfigError, match="loop"):
        prepare_profile(str(tmp_path / "loop1"), ENTRY)
    with pytest.raises(ConfigError, match=r"not a regular file|cannot read"):
        prepare_profile("/dev/zero", ENTRY)
    with pytest.raises(ConfigError, match="is a directory"):
        prepare_profile(str(tmp_path), ENTRY)


def test_a_directory_without_write_permission_is_refused_before(tmp_path: Path, monkeypatch):
    # The tests run as root here, whom permissions do not stop: the kernel's answer is stood in for.
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(ConfigError, match="not writable"):
        prepare_profile(str(tmp_path / "profiles.yaml"), ENTRY)


def test_an_edit_made_while_the_server_starts_is_kept(tmp_path: Path):
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text("openai:\n  model: gpt\n")
    plan = prepare_profile(str(profiles), ENTRY)
    profiles.write_text("openai:\n  model: gpt-5\n")  # the user edits it during the start
    write_profile(plan)
    assert yaml.safe_load(profiles.read_text()) == {"openai": {"model": "gpt-5"}, "vllm": ENTRY}


def test_up_writes_the_profile_and_keeps_the_others(fake_env, tmp_path: Path):
    port = free_port()
    write_preset(fake_env, "hand", port)
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text("openai:\n  model: gpt\n")
    os.chmod(profiles, 0o600)
    started = cli(["up", "hand", "--detach", "--client-config", str(profiles)], fake_env)
    try:
        assert started.returncode == 0, started.stderr
        assert yaml.safe_load(profiles.read_text()) == {
            "openai": {"model": "gpt"}, "vllm": {"base_url": f"http://127.0.0.1:{port}/v1", "timeout": 300}}
        assert os.stat(profiles).st_mode & 0o777 == 0o600  # the user's permissions kept
        assert f"wrote the client's profile (vllm: http://127.0.0.1:{port}/v1)" in started.stderr
    finally:
        assert cli(["down", "hand"], fake_env).returncode == 0


def test_a_bad_profiles_file_stops_up_before_anything_starts(fake_env, tmp_path: Path):
    write_preset(fake_env, "hand", free_port())
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text("vllm:\n  base_url: http://old/v1  # keep this comment\n")
    before = profiles.read_bytes()
    refused = cli(["up", "hand", "--detach", "--client-config", str(profiles)], fake_env)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert str(profiles) in refused.stderr and "comments" in refused.stderr
    assert profiles.read_bytes() == before
    assert "hand" not in cli(["status"], fake_env).stdout  # nothing started
    missing_dir = cli(["up", "hand", "--dry-run", "--client-config", str(tmp_path / "no" / "p.yaml")],
                      fake_env)
    assert missing_dir.returncode == 2 and "does not exist" in missing_dir.stderr
    dry = cli(["up", "hand", "--dry-run", "--client-config", str(tmp_path / "new.yaml")], fake_env)
    assert "# client profile: would write" in dry.stdout and not (tmp_path / "new.yaml").exists()
    hostile = cli(["up", "hand", "--dry-run", "--client-config", str(tmp_path / "a\nrm -rf x.yaml")],
                  fake_env)
    last = hostile.stdout.splitlines()[-1]  # the path stays on its comment line: nothing a shell would run
    assert last.startswith("# client profile: would write") and last.endswith("a\\nrm -rf x.yaml"), last


def test_the_gateway_writes_its_own_endpoint(fake_env, tmp_path: Path):
    write_preset(fake_env, "hand", free_port())
    port = free_port()
    profiles = tmp_path / "profiles.yaml"
    started = cli(["gateway", "hand", "--name", "gw-cc", "--port", str(port), "--detach", "--client-config",
                   str(profiles)], fake_env)
    try:
        assert started.returncode == 0, started.stderr
        assert yaml.safe_load(profiles.read_text()) == {
            "vllm": {"base_url": f"http://127.0.0.1:{port}/v1", "timeout": 300}}
    finally:
        assert cli(["down", "gw-cc"], fake_env, timeout=180).returncode == 0


def test_a_rendered_gateway_has_no_endpoint_to_write(fake_env, tmp_path: Path):
    write_preset(fake_env, "hand", free_port())
    refused = cli(["gateway", "hand", "--render", "systemd", "--client-config", str(tmp_path / "p.yaml")],
                  fake_env)
    assert refused.returncode == 2 and "--render starts none" in refused.stderr
    assert not (tmp_path / "p.yaml").exists()


# --------------------------------------------------------------- issue 23: owner, CRLF, comments after


def test_as_root_the_users_file_stays_theirs_with_its_mode(tmp_path: Path):
    assert os.geteuid() == 0, "this case is about running as root (the tests run as root here)"
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text("openai:\n  model: gpt\n")
    os.chown(profiles, 12345, 23456)
    profiles.chmod(0o640)
    write_profile(prepare_profile(str(profiles), ENTRY))
    info = profiles.stat()
    assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (12345, 23456, 0o640)
    assert yaml.safe_load(profiles.read_text())["vllm"] == ENTRY
    home = tmp_path / "someone"
    home.mkdir()
    os.chown(home, 12345, 23456)
    write_profile(prepare_profile(str(home / "new.yaml"), ENTRY))  # a new file in their directory: theirs
    assert ((home / "new.yaml").stat().st_uid, (home / "new.yaml").stat().st_gid) == (12345, 23456)


@pytest.mark.parametrize("had_vllm", [False, True])
def test_a_crlf_file_gets_crlf_lines(tmp_path: Path, had_vllm: bool):
    text = "# mine\r\nopenai:\r\n  model: gpt\r\n" + ("vllm:\r\n  base_url: old\r\n" if had_vllm else "")
    profiles = tmp_path / "profiles.yaml"
    profiles.write_bytes(text.encode())
    write_profile(prepare_profile(str(profiles), ENTRY))
    written = profiles.read_bytes().decode()
    assert written.startswith("# mine\r\nopenai:\r\n  model: gpt\r\n")
    assert "\n" not in written.replace("\r\n", ""), repr(written)  # no bare LF line
    assert yaml.safe_load(written) == {"openai": {"model": "gpt"}, "vllm": ENTRY}


def test_a_comment_after_the_vllm_block_belongs_to_the_next_profile_and_stays():
    existing = ("vllm:\n  base_url: http://old:1/v1\n  timeout: 9\n# the next one is my laptop\n\n"
                "laptop:\n  base_url: http://laptop/v1\n")
    placed = placed_profile(existing, ENTRY, "p.yaml")
    assert placed.endswith("\n# the next one is my laptop\n\nlaptop:\n  base_url: http://laptop/v1\n")
    assert yaml.safe_load(placed) == {"vllm": ENTRY, "laptop": {"base_url": "http://laptop/v1"}}
    last = "openai:\n  model: gpt\nvllm:\n  base_url: old\n# a closing note\n"
    assert placed_profile(last, ENTRY, "p.yaml").endswith("timeout: 300\n# a closing note\n")
    with pytest.raises(ConfigError, match="has comments"):  # a comment inside the block still refuses
        placed_profile("vllm:\n  # mine\n  base_url: old\n", ENTRY, "p.yaml")
