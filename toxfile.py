"""tox's in-tree plugin: `tox -e convert-<name>` for every recipe file convert/recipes/<name>.yaml.

A recipe added to convert/recipes/ runs as its tox environment without an edit to tox.ini: the
`tox_extend_envs` hook (tox >= 4.29) declares the names, and `tox_add_core_config` seeds each one's
command through an in-memory loader; everything else (deps, the shared env_dir, commands_pre) comes
from tox.ini's [testenv]. A `convert-<name>` with no recipe ends in one line listing the recipes.
Light on purpose: tox imports this file on every call, before any environment exists.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tox.config.loader.memory import MemoryLoader
from tox.config.sets import ConfigSet
from tox.config.types import Command
from tox.plugin import impl
from tox.report import HandledError
from tox.session.state import State

RECIPES_DIR = Path(__file__).resolve().parent / "convert" / "recipes"
PREFIX = "convert-"


def recipe_names() -> list[str]:
    return sorted(path.stem for path in RECIPES_DIR.glob("*.yaml"))


@impl
def tox_extend_envs() -> Iterable[str]:
    return [PREFIX + name for name in recipe_names()]


@impl
def tox_add_core_config(core_conf: ConfigSet, state: State) -> None:
    names = recipe_names()
    asked = [env for env in (getattr(state.conf.options, "env", None) or []) if str(env).startswith(PREFIX)]
    missing = [str(env) for env in asked if str(env).removeprefix(PREFIX) not in names]
    if missing:
        raise HandledError(f"{', '.join(missing)}: no such recipe in convert/recipes/; recipes: {', '.join(names)} "
                           f"(add convert/recipes/<name>.yaml, or run `python rkverify.py init <model file>`)")
    extra = list(state.conf.pos_args(None) or ())
    for name in names:
        state.conf.memory_seed_loaders[PREFIX + name].append(MemoryLoader(
            description=f"convert and verify recipe convert/recipes/{name}.yaml; prints the report path",
            commands=[Command(["python", "rkverify.py", "run", name, *extra])],
        ))
