"""How suite adapters share one space across tasks: POPGym's flat one-hot encoding and action
mapping, zero-padding in MultiTaskEnv, static task tables that must match the packages, and
presets that build without any suite package.
Run: `.venv/bin/python -m pytest -q tests/unit/test_suite_padding.py`
"""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

from polyskill.trainer.envs.multitask import merge_observation_spaces, pad_observation
from polyskill.trainer.envs.popgym import (
    ACTION_COUNTS,
    DEFAULT_MIX,
    action_count,
    flat_size,
    flatten,
    popgym_tasks,
)

Discrete, MultiDiscrete, Tuple, Box = (
    gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.Tuple, gym.spaces.Box,
)  # fmt: skip


def test_flatten_one_hot_rules() -> None:
    assert flatten(2, Discrete(4)).tolist() == [0, 0, 1, 0]
    assert flatten(np.array([1, 0]), MultiDiscrete([2, 3])).tolist() == [0, 1, 1, 0, 0]
    tup = Tuple((Discrete(2), Discrete(3)))
    assert flatten((1, 2), tup).tolist() == [0, 1, 0, 0, 1]
    assert flatten(np.array([0.5, -2.0]), Box(-5, 5, (2,))).tolist() == [0.5, -2.0]
    assert [flat_size(s) for s in (Discrete(4), MultiDiscrete([2, 3]), tup, Box(0, 1, (2,)))] == [
        4, 5, 5, 2,
    ]  # fmt: skip
    assert flatten(1, Discrete(4)).dtype == np.float32


def test_action_counts_flatten_multidiscrete_and_bin_torques() -> None:
    assert action_count(Discrete(7)) == 7
    assert action_count(MultiDiscrete([8, 8])) == 64
    assert action_count(Box(-2, 2, (1,)), torque_bins=9) == 9
    with pytest.raises(TypeError):
        action_count(Box(-1, 1, (2,)))


def test_mixture_pads_observations_at_the_end_and_shares_the_largest_action_count() -> None:
    small, large = Box(0, 1, (4,), np.float32), Box(0, 1, (6,), np.float32)
    merged = merge_observation_spaces([small, large], ["a", "b"])
    assert merged.shape == (6,)
    assert pad_observation(np.ones(4, np.float32), merged).tolist() == [1, 1, 1, 1, 0, 0]
    tasks = popgym_tasks(["RepeatFirstEasy", "BattleshipEasy"])
    assert {t.kwargs["num_actions"] for t in tasks} == {64}
    assert [t.name for t in tasks] == ["popgym_RepeatFirstEasy", "popgym_BattleshipEasy"]
    with pytest.raises(ValueError, match="unknown POPGym"):
        popgym_tasks(["NoSuchTask"])


def test_popgym_action_table_matches_the_package() -> None:
    pytest.importorskip("popgym", reason="popgym missing: needs the `suites` extra")
    from polyskill.trainer.envs.popgym import POPGymEnv

    for name, n in ACTION_COUNTS.items():
        env = POPGymEnv(name)
        assert env.task_actions == n, name
        assert env.observation_space.shape == (flat_size(env.inner.observation_space),)
    assert set(DEFAULT_MIX) <= set(ACTION_COUNTS)


def test_popgym_actions_map_modulo_and_unravel() -> None:
    pytest.importorskip("popgym", reason="popgym missing: needs the `suites` extra")
    from polyskill.trainer.envs.popgym import POPGymEnv

    env = POPGymEnv("BattleshipEasy", num_actions=70)
    assert env.action_space == Discrete(70)
    assert env._inner_action(9).tolist() == [1, 1]  # row-major over 8 x 8
    assert env._inner_action(64 + 9).tolist() == [1, 1]  # beyond the task's 64: modulo
    pend = POPGymEnv("PositionOnlyPendulumEasy", num_actions=9)
    assert pend._inner_action(0)[0] == pytest.approx(-2.0)
    assert pend._inner_action(8)[0] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="below"):
        POPGymEnv("BattleshipEasy", num_actions=10)


def test_metaworld_task_lists_match_the_package() -> None:
    pytest.importorskip("metaworld", reason="metaworld missing: needs the `suites` extra")
    from metaworld import env_dict

    from polyskill.trainer.envs import metaworld as mw

    assert mw.ML10_TRAIN == tuple(env_dict.ML10_V3["train"])
    assert mw.ML10_TEST == tuple(env_dict.ML10_V3["test"])
    assert mw.ML45_TRAIN == tuple(env_dict.ML45_V3["train"])
    assert mw.ML45_TEST == tuple(env_dict.ML45_V3["test"])
    assert set(mw.ALL_TASKS) == set(env_dict.ALL_V3_ENVIRONMENTS)


def test_metaworld_split_weights() -> None:
    from polyskill.trainer.envs.metaworld import metaworld_tasks

    tasks = metaworld_tasks(["reach-v3"], ["door-close-v3"], reward_scales={"reach-v3": 10.0})
    assert [(t.name, t.weight, t.reward_scale) for t in tasks] == [
        ("reach-v3", 1.0, 10.0), ("door-close-v3", 0.0, 1.0),
    ]  # fmt: skip
    with pytest.raises(ValueError, match="unknown Meta-World"):
        metaworld_tasks(["reach-v2"])


def test_importing_envs_and_presets_imports_no_suite_package() -> None:
    code = (
        "import sys, polyskill.trainer.envs, polyskill.trainer.presets as p\n"
        "[p.get_preset(n).validate() for n in p.PRESETS]\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('metaworld', 'mujoco', 'minigrid', 'popgym', 'ale_py', 'cv2', 'procgen')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_suite_ids_are_registered_beside_the_builtin_ones() -> None:
    from polyskill.trainer.envs import BUILTIN_ENVS, SUITE_ENVS

    for env_id in (*BUILTIN_ENVS, *SUITE_ENVS):
        assert env_id in gym.registry
    assert "polyskill/MetaWorld-v0" in SUITE_ENVS and "polyskill/Bandit-v0" in BUILTIN_ENVS
