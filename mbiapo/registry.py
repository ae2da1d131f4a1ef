"""Registries: the one source of names for each extension point (planners, value
estimators), and the loading of plugins that register more.

A plugin is a module (or a ``.py`` file) that calls ``mbiapo.planners.register``,
``mbiapo.value.register`` or ``mbiapo.value.register_q_network`` when imported; one that
registers a gymnasium environment (``gymnasium.register``) is recorded as that
environment's plugin. Load one with ``--plugin MODULE`` on any command,
or install a package that declares it in the ``mbiapo.plugins`` entry-point group.
"""

import importlib
import importlib.util
import sys
from dataclasses import dataclass, is_dataclass
from importlib.metadata import entry_points
from pathlib import Path

import gymnasium

from mbiapo.errors import MbiapoError

ENTRY_POINT_GROUP = "mbiapo.plugins"
_loading: list[str] = []  # the plugin being imported (so its registrations name it)
ENV_PLUGINS: dict[str, str] = {}
"""Gymnasium ids a plugin registered (``gymnasium.register`` while it loaded) -> plugin."""


@dataclass(frozen=True)
class Entry:
    """One registered name: what builds it (a planner class, a value estimator's builder),
    its typed config (a dataclass), and the plugin that registered it ("" for mbiapo's own)."""

    name: str
    build: type
    config: type
    plugin: str


class Registry:
    """Names -> ``Entry``, in registration order."""

    def __init__(self, kind: str, base_config: type):
        self.kind, self.base_config = kind, base_config
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, build, config: type | None = None) -> None:
        """Register ``build`` as ``name`` with its config dataclass (a subclass of
        ``base_config``; default: ``base_config`` itself). Registering a name again replaces
        it only from the same plugin (re-imports); another plugin's name is refused."""
        config = config or self.base_config
        if not (is_dataclass(config) and issubclass(config, self.base_config)):
            raise TypeError(f"{self.kind} '{name}': config must be a dataclass subclassing "
                            f"{self.base_config.__name__}")
        module = build.__module__
        plugin = _loading[-1] if _loading else ("" if module.startswith("mbiapo.") else module)
        old = self._entries.get(name)
        if old is not None and old.plugin != plugin:
            raise ValueError(f"{self.kind} '{name}' is already registered by "
                             f"{old.plugin or 'mbiapo'}")
        self._entries[name] = Entry(name, build, config, plugin)

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def name_of(self, build) -> str:
        """The name ``build`` is registered under."""
        return next(e.name for e in self._entries.values() if e.build is build)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def get(self, name: str, needed_by: str = "") -> Entry:
        """The entry of ``name``; one MbiapoError line naming the choices (and the plugin,
        when ``needed_by`` is a checkpoint that recorded one) for an unknown name."""
        if name in self._entries:
            return self._entries[name]
        raise MbiapoError(f"unknown {self.kind} '{name}'; choose one of: "
                          f"{', '.join(self._entries)}{needed_by}")


def load_plugin(spec: str) -> None:
    """Import a plugin: a module name (``my_pkg.planners``) or a ``.py`` file path (recorded
    by its absolute path, so a checkpoint's hint works from any folder)."""
    if spec.endswith(".py"):
        spec = str(Path(spec).resolve())
    _loading.append(spec)
    envs_before = set(gymnasium.registry)
    try:
        if spec.endswith(".py"):
            path = Path(spec)
            if not path.is_file():
                raise MbiapoError(f"plugin {spec}: file not found")
            name = f"mbiapo_plugin_{path.stem}"
            module_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            module_spec.loader.exec_module(module)
        else:
            importlib.import_module(spec)
    except MbiapoError:
        raise
    except SystemExit as e:  # sys.exit in a plugin would end the command without a word
        raise MbiapoError(f"plugin '{spec}' called sys.exit({e.code!r}) while loading") \
            from None
    except Exception as e:  # a plugin's own error: one line, naming it
        detail = " ".join(str(e).split())[:300] or type(e).__name__
        raise MbiapoError(f"cannot load plugin '{spec}': {type(e).__name__}: {detail}") from None
    finally:
        _loading.pop()
    for env_id in set(gymnasium.registry) - envs_before:
        ENV_PLUGINS[env_id] = spec


def load_plugins(specs: list[str] = ()) -> None:
    """The installed packages' ``mbiapo.plugins`` entry points, then ``specs`` (--plugin)."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        load_plugin(ep.value.split(":")[0])
    for spec in specs:
        load_plugin(spec)
