"""Typed configuration: omegaconf structured configs, composed from YAML in ``configs/``.

Composition order (later wins): dataclass defaults -> ``configs/default.yaml`` ->
``configs/planner/<name>.yaml`` -> ``configs/value/<kind>.yaml`` -> ``configs/env/<id>.yaml``
(if present) -> ``--config FILE`` -> ``key=value`` overrides. Unknown keys and bad values
raise ``MbiapoError`` naming the valid choices.
"""

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mbiapo.errors import MbiapoError
from mbiapo.models.mlp import check_shape

PLANNER_NAMES = ("direct", "iterative", "adam", "cem")
VALUE_KINDS = ("model-free", "model-based")


@dataclass
class EnvConfig:
    id: str = MISSING  # a gymnasium id, e.g. HalfCheetah-v5
    max_episode_steps: int | None = None  # None: the env's own time limit


@dataclass
class PlannerConfig:
    name: str = "direct"  # one of PLANNER_NAMES; direct and iterative are trained
    iters: int = 5  # iterations per action (iterative K; adam/cem steps)
    samples: int = 10  # action samples per J estimate when acting
    train_samples: int = 1  # action samples per J estimate in updates
    # the trained planners' network (direct: the policy MLP; iterative: the amortizer's trunk)
    hidden: int = 256
    layers: int = 2
    activation: str = "relu"  # one of models.mlp.ACTIVATIONS
    layer_norm: bool = False
    adam_lr: float = 0.01
    cem_samples: int = 100
    cem_elites: int = 10
    cem_smoothing: float = 0.0


@dataclass
class ValueConfig:
    kind: str = "model-free"  # one of VALUE_KINDS
    members: int = 2  # Q ensemble size
    hidden: int = 256  # Q networks
    layers: int = 2
    activation: str = "relu"  # one of models.mlp.ACTIVATIONS
    layer_norm: bool = False
    beta_train: float = 1.0  # pessimism for planner training and targets
    beta_collect: float = 1.0  # pessimism while acting
    # model-based only (paper A.5, Tables 8-9)
    horizon: int = 2  # model rollout steps h combined by Retrace
    retrace_lambda: float = 0.9
    model_hidden: int = 256  # world model (dynamics, reward and termination networks)
    model_layers: int = 2
    model_activation: str = "leaky_relu"
    model_layer_norm: bool = True
    rollout_hidden: int = 256  # rollout policy (direct, distilled from the planner)
    rollout_layers: int = 2
    rollout_activation: str = "relu"
    rollout_layer_norm: bool = False
    model_pretrain: int = 1000  # model updates when the random warm-up ends
    model_targets: bool = True  # critic targets from the model-based estimate


@dataclass
class TrainConfig:
    steps: int = 100_000  # environment steps
    seed: int = 0
    gamma: float = 0.99
    tau: float = 5e-3  # Polyak rate of the target Q nets
    lr: float = 3e-4
    batch_size: int = 256
    buffer_size: int = 1_000_000
    warmup_steps: int = 5000  # uniform-random actions before learning starts
    updates_per_step: int = 1
    target_entropy: float | None = None  # None: -|A|
    init_alpha: float = 1.0
    eval_every: int = 5000
    eval_episodes: int = 10
    checkpoint_every: int = 10_000
    save_replay: bool = True  # write replay.h5 beside the checkpoint
    device: str = "cpu"
    compile: bool = False  # torch.compile the planners' J gradient (Agent.compile_value_gradient)


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
        raise MbiapoError(f"{source}: {_describe(e)}") from None


def _describe(e: OmegaConfBaseException) -> str:
    key = getattr(e, "full_key", None)
    if type(e).__name__ == "ConfigKeyError" and key:
        parent = OmegaConf.structured(Config)
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
    cfg = OmegaConf.structured(Config)
    cfg = _merge(cfg, load_yaml(_config_file("default.yaml")), "configs/default.yaml")
    user = load_yaml(config_file) if config_file else OmegaConf.create()
    cli = parse_overrides(list(overrides))
    explicit = OmegaConf.create()
    if env_id:
        explicit.env = {"id": env_id}
    if planner:
        explicit.planner = {"name": planner}
    # Groups are chosen by the highest-priority source naming them.
    top = OmegaConf.merge(user, explicit, cli)
    planner_name = OmegaConf.select(top, "planner.name", default=cfg.planner.name)
    value_kind = OmegaConf.select(top, "value.kind", default=cfg.value.kind)
    env_name = OmegaConf.select(top, "env.id", default=None)
    _check_choice("planner.name", planner_name, PLANNER_NAMES)
    _check_choice("value.kind", value_kind, VALUE_KINDS)
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
    """``base`` (a planner config) with ``configs/planner/<name>.yaml``'s planner settings
    and then ``planner.key=value`` overrides on top: how a checkpoint builds a planner it was
    not trained with."""
    _check_choice("planner", name, PLANNER_NAMES)
    group = load_yaml(_config_file("planner", f"{name}.yaml"))
    cfg = _merge(base, group.get("planner", {}), f"configs/planner/{name}.yaml")
    cli = parse_overrides(list(overrides))
    if set(cli) - {"planner"}:
        raise MbiapoError(f"only planner.* settings can be overridden here, got "
                          f"{', '.join(overrides)}")
    cfg = _merge(cfg, cli.get("planner", {}), "override")
    if not 0 < cfg.cem_elites <= cfg.cem_samples or cfg.iters < 1 or cfg.samples < 1:
        raise MbiapoError("planner overrides need iters, samples >= 1 and "
                          "0 < cem_elites <= cem_samples")
    return cfg


def _check_choice(key: str, value, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise MbiapoError(f"{key}={value!r} is not valid; choose one of: {', '.join(choices)}")


def validate(cfg: DictConfig) -> None:
    """Checks omegaconf's types cannot express; raises MbiapoError."""
    _check_choice("planner.name", cfg.planner.name, PLANNER_NAMES)
    _check_choice("value.kind", cfg.value.kind, VALUE_KINDS)
    if OmegaConf.is_missing(cfg.env, "id"):
        raise MbiapoError("no environment given: pass --env ENV_ID (e.g. HalfCheetah-v5)")
    positive = {
        "train.steps": cfg.train.steps, "train.batch_size": cfg.train.batch_size,
        "train.buffer_size": cfg.train.buffer_size, "planner.iters": cfg.planner.iters,
        "planner.samples": cfg.planner.samples, "planner.train_samples": cfg.planner.train_samples,
        "value.members": cfg.value.members, "train.eval_episodes": cfg.train.eval_episodes,
    }
    for key, value in positive.items():
        if value < 1:
            raise MbiapoError(f"{key} must be >= 1, got {value}")
    if cfg.value.horizon < 0 or cfg.value.model_pretrain < 0:
        raise MbiapoError("value.horizon and value.model_pretrain must be >= 0")
    lam = cfg.value.retrace_lambda
    if not 0 <= lam <= 1:
        raise MbiapoError(f"value.retrace_lambda must lie in [0, 1], got {lam}")
    if not 0 < cfg.train.gamma <= 1 or not 0 < cfg.train.tau <= 1:
        raise MbiapoError("train.gamma and train.tau must lie in (0, 1]")
    if not 0 < cfg.planner.cem_elites <= cfg.planner.cem_samples:
        raise MbiapoError("planner.cem_elites must lie in [1, planner.cem_samples]")
    for group, prefix in NETWORKS:
        check_network(cfg[group], prefix)


NETWORKS = (("planner", ""), ("value", ""), ("value", "model_"), ("value", "rollout_"))
"""Each network's settings: (config group, key prefix) of its hidden, layers, activation and
layer_norm keys."""


def check_network(group: DictConfig, prefix: str) -> None:
    """One MbiapoError line for a network setting no network can be built with."""
    try:
        check_shape(group[f"{prefix}hidden"], group[f"{prefix}layers"],
                    group[f"{prefix}activation"], f"{group._key()}.{prefix}")
    except ValueError as e:
        raise MbiapoError(str(e)) from None



def flatten(cfg: DictConfig) -> dict:
    """{"group.key": value} of a config, e.g. {"planner.name": "direct", ...}."""
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


def from_container(data: dict) -> DictConfig:
    """A config saved in a checkpoint or run folder, re-typed against the schema."""
    cfg = _merge(OmegaConf.structured(Config), OmegaConf.create(data), "saved config")
    validate(cfg)
    return cfg
