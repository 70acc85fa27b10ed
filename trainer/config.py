"""Training configuration: typed dataclasses with defaults that work, one place per setting.

`polyskill train --preset NAME --set key=value` starts from a preset (trainer/presets.py) and
overrides any field by its dotted name (`network.d_model=64`, `optim.lr=3e-4`, `num_envs=4`).
Every value is checked here, before anything starts, so a typo fails in a second, not after hours.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import textwrap
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from polyskill.agent.config import NetworkConfig

from .envs.multitask import TaskSpec
from .learner import OptimConfig
from .losses import LossConfig
from .replay import Weighting


class ConfigError(ValueError):
    """A configuration that cannot run; the message says which setting and how to fix it."""


@dataclass
class TrainConfig:
    tasks: list[TaskSpec] = field(default_factory=list)
    """The task mix: gymnasium ids (any registered env, or the built-in polyskill/... tasks)."""
    episodes_per_trial: int = 1
    """k: episodes of one task the agent sees in one context (in-context adaptation)."""
    num_envs: int = 8
    vector: Literal["sync", "async"] = "sync"
    """Sync vector envs measured faster than async on 2 cores."""
    collector: Literal["inline", "process"] = "inline"
    """inline: act and learn in turn in one process (deterministic for a seed); process: act in
    a separate process that writes the replay while the learner learns (uses a second core)."""
    collector_max_steps_per_s: float = 0.0
    """process collector only: cap on its env steps per second (0 = as fast as it can). On two
    cores the collector's speed is taken from the learner's; the cap gives the rest back."""
    batch_size: int = 24
    """Sequences per update; each is a window of network.context_length steps."""
    steps_per_iteration: int = 16
    """Vector-env steps collected between bursts of updates."""
    updates_per_iteration: int = 4
    learning_starts: int = 1000
    """Env steps collected before the first update."""
    eps_start: float = 0.5
    eps_end: float = 0.05
    eps_anneal_steps: int = 50_000
    """Env steps over which exploration epsilon goes linearly from eps_start to eps_end."""
    eps_randomize: bool = False
    """Each env slot explores with u * epsilon, u ~ U[0, 1] drawn per trial (AMAGO's default):
    the replay keeps near-greedy and near-random data whatever the schedule has reached."""
    continuous_noise: float = 0.3
    """Std of the Gaussian noise added (in [-1, 1] action units) when exploring with Box actions."""
    replay_max_trajectories: int = 5000
    replay_weighting: Weighting = "trajectory"
    """How the learner picks trajectories for its windows: each equally likely, or in proportion
    to their length (every stored step equally likely; the late steps of long episodes are not
    drowned by many short exploratory ones)."""
    total_steps: int = 100_000
    """Env steps to train for (the run stops earlier on SIGINT/SIGTERM, with a checkpoint)."""
    max_seconds: float = 0.0
    """Wall-clock limit for this invocation (0 = none); stops like SIGTERM, with a checkpoint."""
    eval_every_steps: int = 10_000
    eval_trials_per_task: int = 8
    checkpoint_every_steps: int = 5000
    keep_checkpoints: int = 3
    log_every_seconds: float = 10.0
    """How often training rates and losses go to the tracker (and the progress bar)."""
    progress_log_seconds: float = 60.0
    """Without a terminal (logs, containers, CI: no progress bar) a progress line is logged this
    often (0 = never)."""
    seed: int = 0
    torch_threads: int = 1
    device: str = "auto"
    """'auto' picks CUDA when present, else CPU."""
    experiment: str = "polyskill"
    """MLflow experiment name."""
    network: NetworkConfig = field(default_factory=NetworkConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)

    def validate(self) -> None:
        if not self.tasks:
            raise ConfigError("no tasks: pass --preset NAME or --env ENV_ID (any gymnasium id)")
        positive = [
            "episodes_per_trial",
            "num_envs",
            "batch_size",
            "steps_per_iteration",
            "replay_max_trajectories",
            "eval_every_steps",
            "checkpoint_every_steps",
            "eval_trials_per_task",
            "keep_checkpoints",
            "torch_threads",
        ]
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.updates_per_iteration < 0 or self.total_steps < 0 or self.learning_starts < 0:
            raise ConfigError("updates_per_iteration, total_steps and learning_starts must be >= 0")
        if not 0 <= self.eps_end <= 1 or not 0 <= self.eps_start <= 1:
            raise ConfigError("eps_start and eps_end must be in [0, 1]")
        if self.collector_max_steps_per_s < 0:
            raise ConfigError(
                f"collector_max_steps_per_s must be >= 0 (0 = no cap), got "
                f"{self.collector_max_steps_per_s}"
            )
        if self.collector not in ("inline", "process"):
            raise ConfigError(f"collector must be 'inline' or 'process', got {self.collector!r}")
        if self.replay_weighting not in typing.get_args(Weighting):
            raise ConfigError(
                f"replay_weighting must be 'trajectory' or 'length', got {self.replay_weighting!r}"
            )
        if self.vector not in ("sync", "async"):
            raise ConfigError(f"vector must be 'sync' or 'async', got {self.vector!r}")
        for name, part in (("optim", self.optim), ("loss", self.loss)):
            try:
                part.validate()
            except ValueError as e:
                raise ConfigError(f"{name}: {e}") from None
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise ConfigError(f"task names must be unique, got {names}")

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @staticmethod
    def from_dict(d: dict[str, Any]) -> TrainConfig:
        d = dict(d)
        tasks = [TaskSpec(**t) for t in d.pop("tasks", [])]
        nested = {
            "network": NetworkConfig.from_dict(d.pop("network", {})),
            "optim": OptimConfig(**d.pop("optim", {})),
            # stored before td_target existed: those runs trained with scalar targets
            "loss": LossConfig(**{"td_target": "scalar", **d.pop("loss", {})}),
        }
        return TrainConfig(tasks=tasks, **nested, **d)


def _convert(raw: str, typ: Any, key: str) -> Any:
    origin = typing.get_origin(typ)
    try:
        if typ is bool:
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("true", "1", "yes")
        if typ in (int, float, str):
            return typ(raw)
        if origin is Literal:
            if raw not in typing.get_args(typ):
                raise ValueError(f"choose one of {typing.get_args(typ)}")
            return raw
        if origin is tuple:
            return tuple(float(x) for x in raw.strip("()[]").split(",") if x.strip())
        if origin in (types.UnionType, typing.Union):
            return _convert(raw, next(a for a in typing.get_args(typ) if a is not type(None)), key)
    except ValueError as e:
        raise ConfigError(f"--set {key}={raw}: cannot read as {typ}: {e}") from None
    raise ConfigError(f"--set {key}: the setting has type {typ}, which --set cannot change")


def field_docs(cls: type) -> dict[str, str]:
    """The docstrings written under dataclass fields (`x: int = 1` then `\"\"\"doc\"\"\"`)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, nxt in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def settable_keys(obj: Any = None, prefix: str = "") -> dict[str, str]:
    """Dotted key -> 'type = default: doc', for `polyskill train --list-keys`."""
    obj = obj if obj is not None else TrainConfig()
    hints = typing.get_type_hints(type(obj))
    docs = field_docs(type(obj))
    out: dict[str, str] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out.update(settable_keys(value, f"{prefix}{f.name}."))
        elif f.name != "tasks":
            hint = hints[f.name]
            if typing.get_origin(hint) is Literal:
                typ = "|".join(typing.get_args(hint))
            else:
                typ = getattr(hint, "__name__", str(hint).replace("typing.", ""))
            doc = f"  {docs[f.name]}" if f.name in docs else ""
            out[f"{prefix}{f.name}"] = f"{typ} = {value!r}{doc}"
    return out


# Short names for the settings people switch most.
ALIASES = {"agent": "network.agent"}


def apply_overrides(cfg: TrainConfig, overrides: list[str]) -> TrainConfig:
    """Apply `key=value` strings (dotted keys into nested configs) and re-run validation."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        key = ALIASES.get(key.strip(), key.strip())
        *path, name = key.split(".")
        target: Any = cfg
        for part in path:
            if not dataclasses.is_dataclass(target) or not hasattr(target, part):
                raise ConfigError(f"unknown setting {key!r}; see `polyskill train --list-keys`")
            target = getattr(target, part)
        if not dataclasses.is_dataclass(target) or name not in {
            f.name for f in dataclasses.fields(target)
        }:
            raise ConfigError(f"unknown setting {key!r}; see `polyskill train --list-keys`")
        if name == "tasks":
            raise ConfigError("tasks are chosen with --preset or --env, not --set")
        typ = typing.get_type_hints(type(target))[name]
        setattr(target, name, _convert(raw.strip(), typ, key))
    try:
        cfg.network.__post_init__()
    except ValueError as e:
        raise ConfigError(f"network: {e}") from None
    cfg.validate()
    return cfg
