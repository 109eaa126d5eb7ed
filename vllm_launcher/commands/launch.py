"""`launch CLIENT [PRESET...]`: hand a checked model to a coding agent (vllm_launcher.clients).

It starts (or reuses) the gateway for the presets, or takes a server that runs already (`--endpoint`);
checks that the model can serve the client (context, tool calling and its parser, a name it can send, then
doctor --tools at the client's prompt size); merges the client's entries into its own config files (a
backup, owner and mode kept, the ledger of what is ours); and execs the client with its environment set for
that process only. `--print` shows all of it and changes nothing; `--config-only` writes and does not exec;
`--restore` removes our entries again.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vllm_launcher.base.errors import ConfigError, LaunchError
from vllm_launcher.base.output import Result

if TYPE_CHECKING:
    from vllm_launcher.clients.base import Client, ClientPlan, Target
    from vllm_launcher.clients.checks import Verdict
    from vllm_launcher.clients.edits import Change
    from vllm_launcher.preset.schema import Preset

WARM_UP_TIMEOUT_S = 1800.0  # a cold start through the gateway (its own --start-timeout is 30 min)


@dataclass
class Gateway:
    """The gateway the client goes through: reused (running already for these presets) or to start."""

    name: str
    port: int
    presets: list[str]
    running: bool
    root_url: str


@dataclass
class Launch:
    client: Client
    target: Target
    plan: ClientPlan
    preset: Preset | None = None
    gateway: Gateway | None = None
    checks: list[Verdict] = field(default_factory=list)
    binary: str | None = None


def launch(client: str, presets: list[str] | None = None, endpoint: str | None = None,
           model: str | None = None, gateway_name: str = "gateway", port: int = 8080,
           api_key_env: str | None = None, print_only: bool = False, config_only: bool = False,
           restore: bool = False, force: bool = False, no_check: bool = False,
           client_args: list[str] | None = None, as_json: bool = False) -> Result:
    """Run CLIENT against PRESETS (through the gateway) or ENDPOINT; see the module's docstring."""
    from vllm_launcher.clients.registry import lookup

    chosen = lookup(client)
    if sum((print_only, config_only, restore)) > 1:
        raise ConfigError("--print, --config-only and --restore are each a mode of their own: give one")
    if restore:
        return _restore(chosen)
    _check_inputs(gateway_name, port, api_key_env, bool(presets and endpoint))
    found = _resolve(chosen, presets or [], endpoint, model, gateway_name, port, api_key_env)
    found.binary = shutil.which(chosen.binary)
    if print_only:
        return _printed(found, client_args or [], as_json)
    if found.binary is None and not config_only:
        raise LaunchError(f"{chosen.binary} is not installed (not on PATH): {chosen.install}")
    refused = [verdict.text for verdict in found.checks if not verdict.ok]
    if refused and not force:
        return Result(errors=[*refused, "(--force launches anyway)"], code=1)
    _prepare(found.plan)  # every file checked before anything starts or is written
    if found.gateway is not None and not found.gateway.running:
        started = _start_gateway(found.gateway, api_key_env)
        if started is not None:
            return started
    if not no_check:
        problems = _live_checks(found, api_key_env)
        if problems and not force:
            notes = [f"gateway {found.gateway.name} keeps running (vllm-launch down {found.gateway.name})"] \
                if found.gateway is not None else []
            return Result(errors=[*problems, "(--force launches anyway; --no-check skips this check)"],
                          notes=notes, code=1)
    written = _write(_prepare(found.plan))  # read again: the checks took a while, the user may have edited
    env = _environment(found.plan)
    if config_only:
        return Result(text="\n".join([*written, "environment for the client (set it yourself):",
                                      *_env_lines(found.plan)]))
    from vllm_launcher.base import output

    for line in written:
        output.err(f"vllm-launch: {line}")
    argv = [chosen.binary, *found.plan.argv, *(client_args or [])]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(found.binary or chosen.binary, argv, env)
    return Result()  # pragma: no cover (exec does not return)


def _check_inputs(gateway_name: str, port: int, key_env: str | None, both: bool) -> None:
    import re

    from vllm_launcher.base.inputs import check_number, check_server_name
    from vllm_launcher.preset.schema import ENV_NAME

    check_server_name("--gateway-name", gateway_name)
    check_number("--port", port, low=1, high=65535)
    if key_env is not None and not re.fullmatch(ENV_NAME, key_env):
        raise ConfigError(f"{key_env!r} is not an environment variable name", source="--api-key-env")
    if both:
        raise ConfigError("give presets (served through the gateway) or --endpoint URL, not both")


# ---------------------------------------------------------------------------------------------- target


def _resolve(client: Client, refs: list[str], endpoint: str | None, model: str | None, gateway_name: str,
             port: int, key_env: str | None) -> Launch:
    from vllm_launcher.clients.base import Target
    from vllm_launcher.clients.checks import static_checks

    if endpoint is not None:
        from vllm_launcher.doctor.live import check_endpoint_url

        root = check_endpoint_url(endpoint).strip().rstrip("/").removesuffix("/v1")
        name, context = _served(root, model, key_env)
        target = Target(root, name, context, key_env)
        return Launch(client, target, client.plan(target), checks=static_checks(client, target))
    if not refs:
        raise ConfigError("name a preset to serve (vllm-launch presets lists them) or a running server "
                          "with --endpoint URL", field="PRESET")
    from vllm_launcher.preset.plan import served_model_name
    from vllm_launcher.preset.schema import resolve

    chosen = [resolve(ref).preset for ref in refs]
    preset = _pick(chosen, model)
    gateway = _gateway(gateway_name, port, refs, chosen)
    name = served_model_name(preset)
    if "/" in name and client.protocol == "messages":
        name = preset.name  # the gateway answers to the preset's name too
    target = Target(gateway.root_url, name, _context_of(preset), key_env)
    return Launch(client, target, client.plan(target), preset, gateway,
                  static_checks(client, target, preset))


def _pick(presets: list[Preset], model: str | None) -> Preset:
    from vllm_launcher.preset.plan import served_model_name

    if model is None:
        return presets[0]
    for preset in presets:
        if model in (preset.name, served_model_name(preset), *preset.aliases):
            return preset
    raise ConfigError(f"{model!r} is none of the presets' names: " + ", ".join(p.name for p in presets),
                      source="--model")


def _context_of(preset: Preset) -> int | None:
    if preset.max_model_len is not None:
        return preset.max_model_len
    from vllm_launcher.memory.arch import load_arch

    try:
        return load_arch(preset.model).max_position_embeddings
    except (LaunchError, ValueError, OSError):
        return None


def _gateway(name: str, port: int, refs: list[str], presets: list[Preset]) -> Gateway:
    """The running gateway NAME when it serves every preset; else one to start on PORT. A gateway NAME that
    runs for other presets is refused (stopping it would take the user's other clients down)."""
    from vllm_launcher.machine import records

    record = records.read(name)
    live = (record is not None and record.kind == "gateway" and records.supervisor_alive(record)
            and record.state == records.READY)
    if record is not None and live:
        serving = {part.strip() for part in record.served_model.split(",")}
        missing = [p.name for p in presets if p.name not in serving]
        if missing:
            raise ConfigError(f"gateway {name} runs already for {record.served_model}, not for "
                              f"{', '.join(missing)}: stop it (vllm-launch down {name}) or start another "
                              "with --gateway-name NAME --port N", source="--gateway-name")
        return Gateway(name, record.port, refs, True, record.endpoint)
    if record is not None and records.supervisor_alive(record):
        raise ConfigError(f"a server named {name} runs already (and is no ready gateway): pick another "
                          "--gateway-name", source="--gateway-name")
    from vllm_launcher.machine.records import endpoint_url

    return Gateway(name, port, refs, False, endpoint_url("127.0.0.1", port))


def _served(root: str, model: str | None, key_env: str | None) -> tuple[str, int | None]:
    """The model to ask for at a running server (--model, else the first it lists) and its context."""
    import httpx

    headers = {"Authorization": f"Bearer {os.environ.get(key_env, '')}"} if key_env else {}
    try:
        response = httpx.get(f"{root}/v1/models", headers=headers, timeout=10)
        listed = response.json().get("data", []) if response.status_code == 200 else []
    except (httpx.HTTPError, ValueError, AttributeError):
        listed = []
    models = {str(m.get("id")): m.get("max_model_len") for m in listed if isinstance(m, dict)}
    if model is None:
        if not models:
            raise LaunchError(f"{root}/v1/models lists no model: give --model NAME")
        model = next(iter(models))
    context = models.get(model)
    return model, context if isinstance(context, int) and not isinstance(context, bool) else None


# --------------------------------------------------------------------------------------------- actions


def _start_gateway(gateway: Gateway, key_env: str | None) -> Result | None:
    from vllm_launcher.base import output
    from vllm_launcher.commands.gateway import gateway as gateway_command

    started = gateway_command(presets=gateway.presets, name=gateway.name, port=gateway.port, detach=True,
                              api_key_env=key_env)
    if started.code != 0:
        return started
    output.err(f"vllm-launch: started gateway {gateway.name} at {gateway.root_url} "
               f"(stop it with: vllm-launch down {gateway.name})")
    return None


def _live_checks(found: Launch, key_env: str | None) -> list[str]:
    """A first request (a cold start through the gateway), then doctor --tools at the client's prompt size;
    the errors, each with its fix."""
    import httpx

    from vllm_launcher.base import output

    if not found.client.uses_tools:
        return []
    key = os.environ.get(key_env, "") if key_env else ""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    output.err(f"vllm-launch: checking {found.target.model} for {found.client.name} (the first request may "
               "start the server: a minute or more on a CPU)")
    try:
        httpx.post(f"{found.target.base_url}/chat/completions", headers=headers, timeout=WARM_UP_TIMEOUT_S,
                   json={"model": found.target.model, "max_tokens": 1,
                         "messages": [{"role": "user", "content": "hi"}]})
    except httpx.HTTPError as exc:
        return [f"{found.target.base_url} does not answer ({type(exc).__name__}: {exc})"]
    from vllm_launcher.doctor.tools import run_checks

    prompt = found.client.prompt_tokens
    if found.target.context_tokens:
        prompt = min(prompt, max(1, found.target.context_tokens - 512))
    findings = run_checks(found.target.base_url, found.target.model, api_key=key or None,
                          parser=found.preset.tool_calling.parser if found.preset else None,
                          client_prompt_tokens=prompt, preset=found.preset.name if found.preset else None)
    return [f"{f.code} {f.message}" + (f": {f.fix}" if f.fix else "")
            for f in findings if f.severity == "error"]


def _prepare(plan: ClientPlan) -> list[Change]:
    from vllm_launcher.clients.writing import read_ledger, read_state

    ledger = read_ledger()
    changes = []
    for edit in plan.edits:
        state = read_state(edit.path)
        changes.append(edit.plan(state, ledger.get(str(state.target), {})))
    return changes


def _write(changes: list[Change]) -> list[str]:
    from vllm_launcher.base.safe_text import printable
    from vllm_launcher.clients.writing import read_ledger, remove_file, write_keeping, write_ledger

    ledger = read_ledger()
    lines = []
    for change in changes:
        key = str(change.before.target)
        if change.text is None:
            remove_file(change.before)
            ledger.pop(key, None)
            lines.append(f"removed {printable(key)}")
            continue
        if change.changes:
            saved = write_keeping(change.before, change.text)
            lines.append(f"wrote {printable(key)} ({change.summary})"
                         + (f"; backup: {printable(str(saved))}" if saved else ""))
        else:
            lines.append(f"{printable(key)} already holds it ({change.summary})")
        lines += [f"  {printable(note)}" for note in change.notes]
        if change.ledger is not None:
            entry = ledger.get(key, {})
            created = entry.get("__file_created__", change.before.text is None)
            ledger[key] = {**entry, **change.ledger, "__file_created__": created}
    write_ledger(ledger)
    return lines


def _restore(client: Client) -> Result:
    from vllm_launcher.base.safe_text import printable
    from vllm_launcher.clients.base import Target
    from vllm_launcher.clients.writing import (
        read_ledger,
        read_state,
        remove_file,
        write_keeping,
        write_ledger,
    )

    plan = client.plan(Target("http://127.0.0.1:8080", "model"))
    ledger = read_ledger()
    pending = []
    for edit in plan.edits:
        state = read_state(edit.path)
        change = edit.unplan(state, ledger.get(str(state.target), {}))
        pending.append((edit, state, change))
    lines = []
    for _edit, state, change in pending:
        key = str(state.target)
        if change is None:
            lines.append(f"{printable(key)}: nothing of vllm-launch's")
            continue
        if change.text is None:
            remove_file(state)
            lines.append(f"removed {printable(key)}")
        elif change.changes:
            saved = write_keeping(state, change.text)
            lines.append(f"{change.summary}: {printable(key)}" + (f" (backup: {printable(str(saved))})"
                                                                   if saved else ""))
        lines += [f"  {printable(note)}" for note in change.notes]
        if not change.notes:
            ledger.pop(key, None)
    write_ledger(ledger)
    return Result(text="\n".join(lines))


def _environment(plan: ClientPlan) -> dict[str, str]:
    env = {**os.environ, **plan.env}
    for name, source in plan.secret_env.items():
        value = os.environ.get(source)
        if not value:
            raise ConfigError(f"${source} is not set: the gateway's key comes from it",
                              source="--api-key-env")
        env[name] = value
    return env


# ---------------------------------------------------------------------------------------------- --print


def _env_lines(plan: ClientPlan) -> list[str]:
    from vllm_launcher.base.safe_text import printable

    lines = [f"  {name}={printable(shlex.quote(value))}" for name, value in plan.env.items()]
    lines += [f'  {name}="${source}"' for name, source in plan.secret_env.items()]
    return lines


def _printed(found: Launch, client_args: list[str], as_json: bool) -> Result:
    from vllm_launcher.base.safe_text import printable

    changes = _prepare(found.plan)
    argv = [found.client.binary, *found.plan.argv, *client_args]
    data: dict[str, Any] = {
        "client": found.client.name, "model": found.target.model, "base_url": found.target.base_url,
        "context_tokens": found.target.context_tokens,
        "gateway": None if found.gateway is None else {
            "name": found.gateway.name, "url": found.gateway.root_url, "running": found.gateway.running,
            "presets": found.gateway.presets},
        "checks": [{"ok": v.ok, "text": v.text} for v in found.checks],
        "env": found.plan.env, "secret_env": found.plan.secret_env,
        "files": [{"path": str(c.before.target), "action": _action(c), "summary": c.summary, "entry": c.shown,
                   "notes": c.notes} for c in changes],
        "argv": argv, "installed": found.binary is not None}
    if as_json:
        return Result(data=data, as_json=True)
    lines = [f"client:  {found.client.description}"
             + ("" if found.binary else f" -- not installed: {found.client.install}")]
    if found.gateway is not None:
        verb = "reuses the running" if found.gateway.running else "starts"
        lines.append(f"gateway: {verb} gateway {found.gateway.name} at {found.gateway.root_url} for "
                     + ", ".join(found.gateway.presets))
    lines.append(f"model:   {printable(found.target.model)} at {printable(found.target.base_url)}")
    lines.append("checks:")
    lines += [f"  {'ok  ' if v.ok else 'FIX '} {printable(v.text)}" for v in found.checks]
    if found.client.uses_tools:
        lines.append(f"  ...  doctor --tools at {found.client.prompt_tokens} prompt tokens: run at launch, "
                     "not by --print")
    lines.append("environment (for the client's process only):")
    lines += _env_lines(found.plan)
    lines.append("files:")
    for change in changes:
        lines.append(f"  {printable(str(change.before.target))}: {_action(change)} ({change.summary})")
        lines += [f"    {printable(line)}" for line in change.shown.splitlines()]
        lines += [f"    note: {printable(note)}" for note in change.notes]
    lines.append("command:")
    lines.append("  " + printable(shlex.join(argv)))
    return Result(text="\n".join(lines))


def _action(change: Change) -> str:
    if change.text is None:
        return "removes it"
    if not change.changes:
        return "unchanged (holds it already)"
    return "creates it" if change.before.text is None else "merges into it (backup: FILE.vllm-launch.bak)"
