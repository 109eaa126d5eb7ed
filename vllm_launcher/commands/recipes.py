"""`vllm-launch recipes`: vLLM's model recipes (a checkout of github.com/vllm-project/recipes, or any
directory in that format) listed, and one turned into a checked preset (printed, or saved as a user
preset)."""

from __future__ import annotations

import os
from pathlib import Path

from vllm_launcher.base.errors import ConfigError
from vllm_launcher.base.output import Result, table
from vllm_launcher.base.safe_text import printable


def _directory(directory: str | None) -> Path:
    from vllm_launcher.preset.recipes import RECIPES_ENV

    chosen = directory or os.environ.get(RECIPES_ENV)
    if not chosen:
        raise ConfigError(f"give --dir DIR (a checkout of https://github.com/vllm-project/recipes) or set "
                          f"{RECIPES_ENV}", field="--dir")
    return Path(chosen).expanduser()


def recipes(model: str | None = None, directory: str | None = None, variant: str | None = None,
            feature: list[str] | None = None, save: str | None = None, force: bool = False,
            as_json: bool = False, hardware_file: str | None = None, device: str | None = None,
            gpus: int | None = None, gpu_mem_gib: float | None = None,
            ram_gib: float | None = None, trust_recipe: bool = False) -> Result:
    """Without MODEL: the recipes in the directory. With MODEL: its recipe as a preset (the variant the
    machine's GPU memory holds, unless --variant), checked like any preset; --save NAME keeps it."""
    from vllm_launcher.preset import recipes as recipe_mod

    where = _directory(directory)
    if model is None:
        found, broken = recipe_mod.find_recipes(where)
        rows = [[r.model_id, r.min_vllm_version or "", ", ".join(r.features) or "-",
                 ", ".join(f"{v.name} {v.vram_minimum_gb:g} GB" if v.vram_minimum_gb else v.name
                           for v in r.variants) or "-"] for r in found]
        data = {"recipes": [r.model_dump() for r in found], "errors": broken}
        return Result(text=table(["MODEL", "MIN vLLM", "FEATURES", "VARIANTS (min VRAM)"], rows),
                      data=data, as_json=as_json,
                      notes=[f"vllm-launch: warning: {printable(b)}" for b in broken])
    from vllm_launcher.commands.fit import save_user_preset, select_hardware
    from vllm_launcher.memory.fit import check_preset_name
    from vllm_launcher.preset.schema import preset_as_yaml

    if save is not None:
        check_preset_name(save)
        name = save
    else:  # a name from the model id; the preset's own pattern decides, with a plain fallback
        import re

        name = re.sub(r"[^a-z0-9-]+", "-", model.rsplit("/", 1)[-1].lower()).strip("-")[:60] or "recipe"
        try:
            check_preset_name(name)
        except ConfigError:
            name = "recipe"
    recipe = recipe_mod.recipe_for(model, where)
    hw = select_hardware(hardware_file, device, gpus, gpu_mem_gib, ram_gib)
    target_device = device or ("cuda" if hw.gpus else "cpu")
    gpu_gb = sum(g.total_bytes for g in hw.gpus) / 1e9 if hw.gpus else None
    chosen = recipe_mod.choose_variant(recipe, gpu_gb, variant)
    preset = recipe_mod.to_preset(recipe, name, variant=chosen, features=feature, device=target_device)
    risky = recipe_mod.risky_settings(recipe.base_env, recipe_mod.chosen_args(
        recipe, chosen, recipe_mod.chosen_features(recipe, feature), target_device))
    if risky and not trust_recipe:
        raise ConfigError(f"the recipe sets {'; '.join(risky)}: read it, then --trust-recipe to accept "
                          "(or remove them from the recipe)", source=recipe.source)
    notes = [f"vllm-launch: warning: accepted with --trust-recipe: {'; '.join(risky)}"] if risky else []
    notes += _version_notes(recipe)
    if save:
        notes.append(f"saved {save_user_preset(preset, save, force)}")
    return Result(text=preset_as_yaml(preset).rstrip("\n"), notes=notes)


def _version_notes(recipe) -> list[str]:
    """A warning when the installed vLLM is older than the recipe asks."""
    from vllm_launcher.machine import system
    from vllm_launcher.preset import flagtable

    installed = system.vllm_info().version
    if not recipe.min_vllm_version:
        return []
    if installed is None:
        return [f"vllm-launch: warning: the recipe needs vLLM >= {recipe.min_vllm_version}; no vLLM is "
                "installed for this interpreter"]
    if flagtable.release_key(installed) < flagtable.release_key(recipe.min_vllm_version):
        return [f"vllm-launch: warning: the recipe needs vLLM >= {recipe.min_vllm_version}; this machine has "
                f"{installed}"]
    return []
