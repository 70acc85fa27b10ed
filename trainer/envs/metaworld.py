"""Meta-World v3 tasks as gymnasium envs: `polyskill/MetaWorld-v0` with `task="reach-v3"`.

One env is one Meta-World task family (e.g. reach-v3) with its goal hidden (the last 3 of the 39
observation entries are zero): the agent has to find the goal from rewards, in context. A task
*variation* (object and goal positions, Meta-World's `rand_vec`) is drawn by `sample_task(rng)`
once per trial and kept for every episode of it, so a k-episode trial is k attempts at the same
goal (ML1/ML10/ML45 protocol). Used without `TrialEnv`, every reset draws a new variation.

Why not `metaworld.ML10()`? The benchmark object pre-builds 50 goals per task by instantiating and
resetting every task (17 s for ML10, 40 s and 1.4 GB for ML45), and each vector-env slot would
repeat that. Here a variation is drawn the way the benchmark draws one (the task's own reset
logic, including its rejection loops, seeded from the trial's generator), and the MuJoCo
simulation is built lazily on first reset: `MultiTaskEnv` can hold 50 of these per slot, and only
the tasks a slot plays cost memory (about 27 MB each). At most `MAX_LIVE_SIMS` simulations per
process stay alive; the least recently used idle ones (between episodes) are freed and rebuilt
(0.1 s) when that task comes back, with the same variation.

Benchmarks are split by task family: train tasks (weight 1) and held-out test tasks (weight 0:
evaluated, never trained on) - see `metaworld_tasks` and the `metaworld-ml10` preset.
Episodes last 500 steps (Meta-World truncates); rewards are v3's raw dense rewards (0-10 per
step); `info["success"]` is sticky within an episode: 1.0 once the task has been solved at any
step of it (the benchmark's success-rate definition), so TrialEnv reads the episode's success at
its last step. Needs the `suites` extra (`metaworld`, `packaging`).
Exercise it with: `.venv/bin/python -m pytest -q tests/integration/test_suites.py -k metaworld`.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from .multitask import TaskSpec

OBS_DIM = 39
MAX_LIVE_SIMS = int(os.environ.get("POLYSKILL_METAWORLD_MAX_LIVE", "16"))
"""Simulations kept alive per process (about 27 MB each); keep it >= the number of env slots."""

ML10_TRAIN = (
    "reach-v3", "push-v3", "pick-place-v3", "door-open-v3", "drawer-close-v3",
    "button-press-topdown-v3", "peg-insert-side-v3", "window-open-v3", "sweep-v3",
    "basketball-v3",
)  # fmt: skip
ML10_TEST = ("drawer-open-v3", "door-close-v3", "shelf-place-v3", "sweep-into-v3", "lever-pull-v3")
ML45_TRAIN = (
    "assembly-v3", "basketball-v3", "button-press-topdown-v3", "button-press-topdown-wall-v3",
    "button-press-v3", "button-press-wall-v3", "coffee-button-v3", "coffee-pull-v3",
    "coffee-push-v3", "dial-turn-v3", "disassemble-v3", "door-close-v3", "door-open-v3",
    "drawer-close-v3", "drawer-open-v3", "faucet-open-v3", "faucet-close-v3", "hammer-v3",
    "handle-press-side-v3", "handle-press-v3", "handle-pull-side-v3", "handle-pull-v3",
    "lever-pull-v3", "pick-place-wall-v3", "pick-out-of-hole-v3", "push-back-v3",
    "pick-place-v3", "plate-slide-v3", "plate-slide-side-v3", "plate-slide-back-v3",
    "plate-slide-back-side-v3", "peg-insert-side-v3", "peg-unplug-side-v3", "soccer-v3",
    "stick-push-v3", "stick-pull-v3", "push-wall-v3", "push-v3", "reach-wall-v3", "reach-v3",
    "shelf-place-v3", "sweep-into-v3", "sweep-v3", "window-open-v3", "window-close-v3",
)  # fmt: skip
ML45_TEST = ("bin-picking-v3", "box-close-v3", "hand-insert-v3", "door-lock-v3", "door-unlock-v3")
"""Copies of metaworld.env_dict's ML10_V3 / ML45_V3 splits (checked by a unit test), so presets
can be built without importing metaworld."""
ALL_TASKS = tuple(sorted(ML45_TRAIN + ML45_TEST))

_LIVE: OrderedDict[int, MetaWorldEnv] = OrderedDict()  # id(env) -> env with a live simulation


def _missing_hint(detail: str) -> str:
    return (
        "Meta-World tasks need the `suites` extra: pip install -e '.[suites]' "
        f"(metaworld>=3,<4 and packaging); {detail}"
    )


def _import_metaworld() -> Any:
    try:
        import metaworld.env_dict  # noqa: F401  (needs `packaging` too)
    except ImportError as e:
        raise ImportError(_missing_hint(f"import failed: {e}")) from e
    return metaworld.env_dict


class MetaWorldEnv(gym.Env):
    """One goal-hidden Meta-World v3 task; a new goal/object variation per `sample_task`."""

    metadata = {"render_modes": []}

    def __init__(self, task: str = "reach-v3") -> None:
        if task not in ALL_TASKS:
            raise ValueError(f"unknown Meta-World v3 task {task!r}; known: {list(ALL_TASKS)}")
        missing = [m for m in ("metaworld", "packaging") if importlib.util.find_spec(m) is None]
        if missing:  # fail at construction; the simulation itself is only built on reset
            raise ImportError(_missing_hint(f"not installed: {missing}"))
        self.task = task
        # NOTE: declared statically (all v3 tasks share them) so no simulation is built here.
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
        self._sim: Any = None
        self._rng = np.random.default_rng()
        self._rand_vec: np.ndarray | None = None  # the current variation
        self._variation_seed: int | None = None  # set by sample_task: draw on next reset
        self._driven_externally = False
        self._in_episode = False
        self._success = False

    def sample_task(self, rng: np.random.Generator) -> None:
        """Choose the next trial's variation; resets keep it until the next call."""
        self._driven_externally = True
        self._variation_seed = int(rng.integers(2**31))

    def _build(self) -> Any:
        env_dict = _import_metaworld()
        sim = env_dict.ALL_V3_ENVIRONMENTS[self.task]()  # goal hidden by default in v3
        sim._set_task_called = True  # what Benchmark.set_task does, minus the pickled Task
        sim._set_task_inner()
        self._sim = sim
        _evict_idle(keep=id(self))
        _LIVE[id(self)] = self
        return sim

    def _touch(self) -> Any:
        sim = self._sim if self._sim is not None else self._build()
        _LIVE.move_to_end(id(self))
        return sim

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        sim = self._touch()
        redraw = not self._driven_externally or self._rand_vec is None
        if redraw or self._variation_seed is not None:
            # A new variation, drawn by the task's own reset logic (which rejects e.g. goals too
            # close to the object), from a generator seeded by the trial's.
            seed_ = self._variation_seed
            seed_ = int(self._rng.integers(2**31)) if seed_ is None else seed_
            sim._freeze_rand_vec, sim.seeded_rand_vec = False, True
            sim.np_random = np.random.default_rng(seed_)
            obs, info = sim.reset()
            self._rand_vec = np.array(sim._last_rand_vec, copy=True)
            self._variation_seed = None
            sim._freeze_rand_vec = True
        else:  # the trial's next episode (or a rebuilt simulation): same variation
            sim._freeze_rand_vec, sim._last_rand_vec = True, self._rand_vec.copy()
            obs, info = sim.reset()
        self._in_episode, self._success = True, False
        return obs.astype(np.float32), {**info, "success": 0.0}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        sim = self._touch()
        obs, reward, terminated, truncated, info = sim.step(np.asarray(action, np.float32))
        self._success = self._success or bool(info.get("success", 0.0))
        self._in_episode = not (terminated or truncated)
        info = {**info, "success": float(self._success)}
        return obs.astype(np.float32), float(reward), bool(terminated), bool(truncated), info

    def _free(self) -> None:
        if self._sim is not None:
            self._sim.close()
            self._sim = None
        _LIVE.pop(id(self), None)

    def close(self) -> None:
        self._free()
        super().close()


def _evict_idle(keep: int) -> None:
    """Make room for one more simulation: free the least recently used ones beyond
    MAX_LIVE_SIMS, never one mid-episode (the limit is exceeded instead) nor `keep`."""
    for key in list(_LIVE):
        if len(_LIVE) < MAX_LIVE_SIMS:
            return
        env = _LIVE[key]
        if key != keep and not env._in_episode:
            env._free()


def live_simulations() -> int:
    """How many MuJoCo simulations this process holds (for tests and memory checks)."""
    return len(_LIVE)


def metaworld_tasks(
    train: Sequence[str],
    test: Sequence[str] = (),
    reward_scales: dict[str, float] | None = None,
) -> list[TaskSpec]:
    """TaskSpecs named after the tasks: `train` ones trained on, `test` ones (weight 0) only
    evaluated (held out)."""
    scales = reward_scales or {}
    unknown = [t for t in (*train, *test) if t not in ALL_TASKS]
    if unknown:
        raise ValueError(f"unknown Meta-World v3 tasks {unknown}; known: {list(ALL_TASKS)}")
    return [
        TaskSpec(name, "polyskill/MetaWorld-v0", {"task": name}, scales.get(name, 1.0), weight)
        for names, weight in ((train, 1.0), (test, 0.0))
        for name in names
    ]


def reference_returns(task: str) -> dict[str, float] | None:
    """Per-episode return of uniformly random actions and of Meta-World's scripted expert for a
    v3 task (`{"random", "expert", ...}`), None for other names.

    From metaworld_v3_reference_returns.json: 2 episodes each on a 2-core CPU machine, so a
    normalisation reference, not exact values (the expert's success is 1.0 on every task).
    """
    return _reference_table().get(task)


@functools.cache
def _reference_table() -> dict[str, dict[str, float]]:
    path = Path(__file__).with_name("metaworld_v3_reference_returns.json")
    return json.loads(path.read_text())["tasks"]
