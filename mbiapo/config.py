"""Typed configuration: omegaconf structured configs, composed from YAML in ``configs/``.

The ``planner`` and ``value`` groups take the typed config their registered planner and value
estimator declare (``mbiapo.planners.register``, ``mbiapo.value.register``), so each has its
own keys. Composition order (later wins): dataclass defaults -> ``configs/default.yaml`` ->
``configs/planner/<name>.yaml`` -> ``configs/value/<kind>.yaml`` -> ``configs/env/<id>.yaml``
(if present) -> ``--config FILE`` -> ``key=value`` overrides. Unknown keys and bad values
raise ``MbiapoError`` naming the valid choices.
"""

import copy
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import gymnasium
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mbiapo import threads
from mbiapo.bounds import check_fields, setting
from mbiapo.errors import MbiapoError
from mbiapo.planners import PLANNERS, AdamConfig, CEMConfig, PlannerConfig
from mbiapo.registry import ENV_PLUGINS
from mbiapo.value import Q_NETWORKS, VALUES, ModelBasedConfig, ValueConfig


@dataclass
class EnvConfig:
    id: str = MISSING  # a gymnasium id, e.g. HalfCheetah-v5
    max_episode_steps: int | None = setting(None, ge=1)  # None: the env's own time limit


@dataclass
class TrainConfig:
    steps: int = setting(100_000, ge=1)  # environment steps
    seed: int = setting(0, ge=0)
    gamma: float = setting(0.99, gt=0, le=1)
    tau: float = setting(5e-3, gt=0, le=1)  # Polyak rate of the target Q nets
    lr: float = setting(3e-4, gt=0)
    batch_size: int = setting(256, ge=1)
    buffer_size: int = setting(1_000_000, ge=1)
    warmup_steps: int = setting(5000, ge=0)  # uniform-random actions before learning starts
    updates_per_step: int = setting(1, ge=1)
    target_entropy: float | None = None  # None: -|A|
    init_alpha: float = setting(1.0, gt=0)
    eval_every: int = setting(5000, ge=1)
    eval_episodes: int = setting(10, ge=1)
    checkpoint_every: int = setting(10_000, ge=0)  # 0: only when the run ends or stops
    save_replay: bool = True  # write replay.h5 beside the checkpoint
    device: str = "cpu"
    compile: bool = False  # torch.compile the planners' J gradient (Agent.compile_value_gradient)
    tensorboard: bool = False  # also log metrics.csv's scalars to DIR/tb (the tensorboard extra)
    threads: str = "auto"  # torch threads: auto (mbiapo/threads.py) or a number; --threads wins
    # the planner that acts (collection, evaluation, plan) while `planner` trains; None: the
    # trained planner. A sequence planner (mppi-seq, cem-seq, adam-seq) is MPC acting with
    # the trained planner as its prior (TD-MPC); it needs a model (value.kind=model-based)
    act_planner: str | None = None
    act_overrides: list[str] = field(default_factory=list)  # its planner.key=value settings


@dataclass
class Config:
    env: EnvConfig = field(default_factory=EnvConfig)
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    value: ValueConfig = field(default_factory=ValueConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def _config_file(*parts: str) -> Path | None:
    path = Path(str(resources.files("mbiapo.configs").joinpath(*parts)))
    return path if path.is_file() else None


def _merge(cfg: DictConfig, other, source: str) -> DictConfig:
    try:
        return OmegaConf.merge(cfg, other)
    except OmegaConfBaseException as e:
        raise MbiapoError(f"{source}: {_describe(e, cfg)}") from None


def _describe(e: OmegaConfBaseException, cfg: DictConfig) -> str:
    key = getattr(e, "full_key", None)
    if type(e).__name__ == "ConfigKeyError" and key:
        parent = cfg
        for part in key.split(".")[:-1]:
            parent = parent.get(part) if isinstance(parent, DictConfig) else None
        valid = ", ".join(parent.keys()) if isinstance(parent, DictConfig) else ""
        return f"unknown config key '{key}'" + (f" (valid keys here: {valid})" if valid else "")
    return str(e).splitlines()[0] + (f" (key '{key}')" if key else "")


def load_yaml(path: str | Path) -> DictConfig:
    try:
        loaded = OmegaConf.load(path)
    except FileNotFoundError:
        raise MbiapoError(f"config file not found: {path}") from None
    except Exception as e:  # yaml errors come in many types
        raise MbiapoError(f"{path}: not a valid YAML config ({str(e).splitlines()[0]})") from None
    if not isinstance(loaded, DictConfig):
        raise MbiapoError(f"{path}: a config file must hold a mapping")
    return loaded


def parse_overrides(overrides: list[str]) -> DictConfig:
    for item in overrides:
        if "=" not in item:
            raise MbiapoError(f"bad override '{item}': expected key=value, e.g. train.lr=1e-3")
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except OmegaConfBaseException as e:
        raise MbiapoError(f"bad override: {str(e).splitlines()[0]}") from None


def compose(env_id: str | None = None, planner: str | None = None,
            config_file: str | None = None, overrides: list[str] = ()) -> DictConfig:
    """Build the resolved config; explicit arguments win over files, overrides win over all."""
    defaults = load_yaml(_config_file("default.yaml"))
    user = load_yaml(config_file) if config_file else OmegaConf.create()
    cli = parse_overrides(list(overrides))
    explicit = OmegaConf.create()
    if env_id:
        explicit.env = {"id": env_id}
    if planner:
        explicit.planner = {"name": planner}
    # Groups are chosen by the highest-priority source naming them; each takes its schema.
    top = OmegaConf.merge(defaults, user, explicit, cli)
    planner_name = OmegaConf.select(top, "planner.name")
    value_kind = OmegaConf.select(top, "value.kind")
    env_name = OmegaConf.select(top, "env.id", default=None)
    cfg = OmegaConf.structured(Config)
    cfg.planner = OmegaConf.structured(PLANNERS.get(planner_name).config)
    cfg.value = OmegaConf.structured(VALUES.get(value_kind).config)
    cfg = _merge(cfg, defaults, "configs/default.yaml")
    for group, name in (("planner", planner_name), ("value", value_kind), ("env", env_name)):
        path = _config_file(group, f"{name}.yaml") if name else None
        if path:
            group_cfg = load_yaml(path)
            # env files may hold per-planner settings under by_planner.<name>
            by_planner = group_cfg.pop("by_planner", {})
            cfg = _merge(cfg, group_cfg, f"configs/{group}/{name}.yaml")
            if planner_name in by_planner:
                cfg = _merge(cfg, by_planner[planner_name], f"configs/{group}/{name}.yaml")
    cfg = _merge(cfg, user, config_file or "config")
    cfg = _merge(cfg, explicit, "arguments")
    cfg = _merge(cfg, cli, "override")
    validate(cfg)
    return cfg


def planner_group(name: str, base: DictConfig, overrides: list[str] = ()) -> DictConfig:
    """The config of planner ``name`` for an agent whose planner config is ``base``: its
    typed defaults, ``configs/planner/<name>.yaml``'s planner settings (if any), the agent's
    own settings (``AGENT_FIELDS`` but the name) and ``planner.key=value`` overrides on top.
    How a checkpoint builds a planner it was not trained with."""
    cfg = OmegaConf.structured(PLANNERS.get(name).config)
    path = _config_file("planner", f"{name}.yaml")
    if path:
        cfg = _merge(cfg, load_yaml(path).get("planner", {}), f"configs/planner/{name}.yaml")
    cfg.samples, cfg.train_samples, cfg.name = base.samples, base.train_samples, name
    cli = parse_overrides(list(overrides))
    if set(cli) - {"planner"}:
        raise MbiapoError(f"only planner.* settings can be overridden here, got "
                          f"{', '.join(overrides)}")
    if "name" in cli.get("planner", {}):
        raise MbiapoError("choose the planner with --planner (or --planners), not planner.name")
    cfg = _merge(cfg, cli.get("planner", {}), "override")
    _validate_planner(cfg)
    return cfg


def value_group(kind: str, base: DictConfig) -> DictConfig:
    """The ``value`` config of estimator ``kind`` for an agent whose value config is
    ``base``: its typed defaults, ``configs/value/<kind>.yaml``, then the settings of
    ``base`` that it has (the Q ensemble's, pessimism). How a model-free checkpoint gets
    a model-based estimate (``mbiapo plan --model-based``)."""
    cfg = OmegaConf.structured(VALUES.get(kind).config)
    path = _config_file("value", f"{kind}.yaml")
    if path:
        cfg = _merge(cfg, load_yaml(path).get("value", {}), f"configs/value/{kind}.yaml")
    shared = {k: v for k, v in OmegaConf.to_container(base).items()
              if k in cfg and k != "kind"}
    cfg = _merge(cfg, {**shared, "kind": kind}, "value settings")
    _check_group(VALUES.get(kind).config, cfg, "value")
    return cfg


def overrides_for(name: str, overrides: list[str]) -> list[str]:
    """The ``planner.key=value`` overrides that are settings of planner ``name``."""
    keys = set(OmegaConf.structured(PLANNERS.get(name).config).keys())
    return [item for item in overrides
            if item.startswith("planner.") and item.partition("=")[0][8:] in keys]


def _check_group(schema: type, cfg: DictConfig, group: str) -> None:
    """Each field as its dataclass declares it (``mbiapo.bounds``), then the config's own
    ``check`` of what depends on several fields."""
    problem = check_fields(schema, cfg, group)
    if problem is None and hasattr(schema, "check"):
        problem = schema.check(cfg)
    if problem:
        raise MbiapoError(problem)


def _validate_planner(cfg: DictConfig) -> None:
    _check_group(PLANNERS.get(cfg.name).config, cfg, "planner")


def _check_act_planner(cfg: DictConfig) -> None:
    name, overrides = cfg.train.act_planner, list(cfg.train.act_overrides)
    if name is None:
        if overrides:
            raise MbiapoError("train.act_overrides set without train.act_planner")
        return
    try:
        planner_group(name, cfg.planner, overrides)
    except MbiapoError as e:
        where = " with train.act_overrides" if overrides else ""
        raise MbiapoError(f"train.act_planner={name}{where}: {e}") from None


def validate(cfg: DictConfig) -> None:
    """Checks omegaconf's types cannot express; raises MbiapoError."""
    for (group, key), registry in SELECTED.items():
        registry.get(cfg[group][key])  # one line naming the choices for an unknown name
    if OmegaConf.is_missing(cfg.env, "id"):
        raise MbiapoError("no environment given: pass --env ENV_ID (e.g. HalfCheetah-v5)")
    _check_group(EnvConfig, cfg.env, "env")
    _check_group(TrainConfig, cfg.train, "train")
    try:
        threads.parse(cfg.train.threads)
    except MbiapoError as e:
        raise MbiapoError(f"train.{e}") from None
    _check_act_planner(cfg)
    _validate_planner(cfg.planner)
    _check_group(VALUES.get(cfg.value.kind).config, cfg.value, "value")


def flatten(cfg: DictConfig) -> dict:
    """{"group.key": value} of a config, e.g. {"train.lr": 0.0003, ...}."""
    flat = {}
    for group, values in OmegaConf.to_container(cfg, resolve=True).items():
        items = values.items() if isinstance(values, dict) else [(None, values)]
        flat.update({group if key is None else f"{group}.{key}": value for key, value in items})
    return flat


def differences(a: DictConfig, b: DictConfig, ignore: tuple[str, ...] = ()) -> list[tuple]:
    """(key, value in a, value in b) for every key whose values differ, sorted by key."""
    fa, fb = flatten(a), flatten(b)
    return [(k, fa.get(k), fb.get(k)) for k in sorted(fa.keys() | fb.keys())
            if k not in ignore and fa.get(k) != fb.get(k)]


SELECTED = {("planner", "name"): PLANNERS, ("value", "kind"): VALUES,
            ("value", "q_network"): Q_NETWORKS}
"""What a config selects from a registry: (group, key) -> registry."""
GROUP_SCHEMAS = (("planner", "name"), ("value", "kind"))
"""The selections whose registered config is their group's schema."""


# planner settings of mbiapo 0.2, when every planner's sat in one group: (the config that has
# it now, its new name); planners with another config drop them, and the network keys too
_OLD_PLANNER_KEYS = {"adam_lr": (AdamConfig, "lr"), "cem_samples": (CEMConfig, "population"),
                     "cem_elites": (CEMConfig, "elites"),
                     "cem_smoothing": (CEMConfig, "smoothing")}


_MOVED_KEYS = ModelBasedConfig.field_names() - ValueConfig.field_names()
"""The model-based keys, in every value group before mbiapo 0.4 and now only in
``ModelBasedConfig``: configs of other kinds saved then drop them."""


def from_container(data: dict, needed_by: str = "") -> DictConfig:
    """A config saved in a checkpoint or run folder, re-typed against the schemas of its
    planner and value estimator (``needed_by`` names the file, for the error that a plugin
    registering one of them is not loaded)."""
    data = copy.deepcopy(data)
    planner = data.get("planner", {})
    if _OLD_PLANNER_KEYS.keys() & planner.keys() and planner.get("name") in PLANNERS:
        config = PLANNERS.get(planner["name"]).config
        for old, (owner, new) in _OLD_PLANNER_KEYS.items():
            value = planner.pop(old, None)
            if owner is config and value is not None:
                planner[new] = value
        keys = set(OmegaConf.structured(config).keys())  # and its network keys, if it has none
        data["planner"] = {k: v for k, v in planner.items() if k in keys}
    value = data.get("value", {})
    if value.get("kind") in VALUES:  # mbiapo 0.3 kept the model-based keys in every group
        keys = VALUES.get(value["kind"]).config.field_names()
        data["value"] = {k: v for k, v in value.items() if k in keys or k not in _MOVED_KEYS}
    cfg = OmegaConf.structured(Config)
    defaults = load_yaml(_config_file("default.yaml"))
    plugins = data.pop("plugins", None) or {}
    env_id = data.get("env", {}).get("id")
    if "env.id" in plugins and env_id not in gymnasium.registry:
        raise MbiapoError(f"{needed_by or 'saved config'}: needs the environment '{env_id}', "
                          f"which is not registered{_plugin_hint(plugins['env.id'])}")
    for (group, key), registry in SELECTED.items():
        name = data.get(group, {}).get(key, defaults.get(group, {}).get(key))
        if name is None:  # not in the file: the schema's default
            continue
        if name not in registry:
            raise MbiapoError(f"{needed_by or 'saved config'}: needs the {registry.kind} "
                              f"'{name}', which is not registered"
                              f"{_plugin_hint(plugins.get(f'{group}.{key}'))}")
        if (group, key) in GROUP_SCHEMAS:
            cfg[group] = OmegaConf.structured(registry.get(name).config)
    cfg = _merge(cfg, OmegaConf.create(data), "saved config")
    validate(cfg)
    return cfg


def plugins_of(cfg: DictConfig) -> dict[str, str]:
    """{"planner.name": plugin, ...}: the plugins that registered what a config selects
    (``SELECTED``; only what is not built in) and its environment, for checkpoints to
    record."""
    found = {}
    for (group, key), registry in SELECTED.items():
        entry = registry.get(cfg[group][key])
        if entry.plugin:
            found[f"{group}.{key}"] = entry.plugin
    if cfg.env.id in ENV_PLUGINS:
        found["env.id"] = ENV_PLUGINS[cfg.env.id]
    return found


def _plugin_hint(plugin: str | None) -> str:
    return (f" (registered by the plugin '{plugin}': pass --plugin {plugin}, or in Python "
            f"call mbiapo.api.load_plugin('{plugin}') first)") if plugin else ""
