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

from vllm_launcher.client_config import merged_profiles, profile_entry, profile_yaml
from vllm_launcher.errors import ConfigError

ENTRY = profile_entry("http://127.0.0.1:8000/v1", "cpu")

keys = st.text(min_size=1, max_size=12).filter(lambda k: k != "vllm")
values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                      lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                    max_size=3), max_leaves=8)


def test_the_entry_is_the_guides():
    assert yaml.safe_load(profile_yaml(ENTRY)) == {"vllm": {"base_url": "http://127.0.0.1:8000/v1",
                                                            "timeout": 300}}
    assert profile_entry("http://h:1/v1", "cuda")["timeout"] == 120


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(keys, values, max_size=5), st.text(max_size=40))
def test_a_merge_keeps_every_other_profile_and_sets_vllm(others, base_url):
    existing = yaml.safe_dump({**others, "vllm": {"base_url": "old"}}, sort_keys=False)
    if "#" in existing:
        with pytest.raises(ConfigError):
            merged_profiles(existing, ENTRY, "p.yaml")
        return
    entry = {"base_url": base_url, "timeout": 300}  # any text as the URL: the dumper quotes it
    assert yaml.safe_load(merged_profiles(existing, entry, "p.yaml")) == {**others, "vllm": entry}


@pytest.mark.parametrize(("text", "expected"), [
    ("openai:\n  key: x  # mine\n", "comments"), ("- a\n- b\n", "mapping"),
    ("a: [\n", "not valid YAML (line"), ("just text\n", "mapping")])
def test_a_file_a_rewrite_would_damage_is_refused(text, expected):
    with pytest.raises(ConfigError) as raised:
        merged_profiles(text, ENTRY, "p.yaml")
    assert expected in str(raised.value) and raised.value.source == "p.yaml"


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
