"""Benchmark-suite adapters end to end: each suite's tasks run through the real vector env,
Collector, replay and (for one train() each) the learner and evaluation, with a tiny network.

Each suite is skipped, with the reason, when its package (the `suites` extra) is missing.
Meta-World builds only a few tasks here, never ML45. Run with:
`.venv/bin/python -m pytest -q tests/integration/test_suites.py`
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from polyskill.agent.config import NetworkConfig
from polyskill.agent.network import AgentNetwork
from polyskill.agent.policy import Policy
from polyskill.agent.spaces import ObsSpec, action_spec_from_space, obs_spec_from_space
from polyskill.trainer.collector import Collector, TrialRecord
from polyskill.trainer.config import TrainConfig
from polyskill.trainer.envs.multitask import TaskSpec
from polyskill.trainer.learner import OptimConfig
from polyskill.trainer.loop import train
from polyskill.trainer.presets import get_preset
from polyskill.trainer.replay import ReplayBuffer
from polyskill.trainer.vector import make_vector_env, probe_spaces

EXTRA = "needs the `suites` extra (pip install -e '.[suites]')"


def need(module: str) -> None:
    pytest.importorskip(module, reason=f"{module} missing: {EXTRA}")


def tiny_network(context: int = 16) -> NetworkConfig:
    return NetworkConfig(
        d_model=32, num_layers=1, num_heads=2, d_ff=64, context_length=context, dropout=0.0,
        encoder_hidden=32, head_hidden=32, image_channels=8, text_embed_dim=8, num_critics=2,
        num_bins=16, gammas=(0.9, 0.99),
    )  # fmt: skip


def collect(
    tasks: list[TaskSpec], k: int, steps: int, tmp_path: Path, num_envs: int = 2
) -> tuple[ObsSpec, list[TrialRecord], ReplayBuffer]:
    """Play `steps` vector steps with an untrained tiny policy (epsilon 0.5) into a replay."""
    obs_space, act_space = probe_spaces(tasks)
    net = AgentNetwork(tiny_network(), obs_spec_from_space(obs_space),
                       action_spec_from_space(act_space))  # fmt: skip
    replay = ReplayBuffer(tmp_path / "replay", 100, seed=0)
    envs = make_vector_env(tasks, k, num_envs)
    try:
        collector = Collector(envs, Policy(net, num_envs), net.obs_spec, net.action_spec,
                              replay, seed=0)  # fmt: skip
        finished = [rec for _ in range(steps) for _, rec in collector.step(epsilon=0.5)]
        collector.flush()
    finally:
        envs.close()
    return net.obs_spec, finished, replay


def tiny_train(tasks: list[TaskSpec], k: int, tmp_path: Path, steps: int = 200) -> dict:
    cfg = TrainConfig(
        tasks=tasks, episodes_per_trial=k, num_envs=2, batch_size=4, steps_per_iteration=8,
        updates_per_iteration=1, learning_starts=32, total_steps=steps, eval_every_steps=10**9,
        eval_trials_per_task=1, checkpoint_every_steps=10**9, replay_max_trajectories=50,
        network=tiny_network(), optim=OptimConfig(lr=1e-3, warmup_updates=10),
    )  # fmt: skip
    return train(cfg, tmp_path / "run", track=False)


def test_metaworld_tasks_run_hidden_goal_success_and_variations(tmp_path: Path) -> None:
    need("metaworld")
    from polyskill.trainer.envs.metaworld import live_simulations, metaworld_tasks

    tasks = metaworld_tasks(["reach-v3", "button-press-v3"], test=["coffee-button-v3"])
    spec, finished, replay = collect(tasks, k=1, steps=520, tmp_path=tmp_path)
    assert spec["obs"].kind == "vector" and spec["obs"].shape == (39,)
    assert live_simulations() == 0  # closed with the vector env; weight-0 task never built
    assert len(finished) == 2 and all(len(t.episodes) == 1 for t in finished)
    assert {t.task for t in finished} <= {"reach-v3", "button-press-v3"}
    assert all(e.success in (0.0, 1.0) for t in finished for e in t.episodes)
    assert np.all(replay.sample(4, 16).obs["obs"][..., -3:] == 0)  # goal hidden

    import gymnasium as gym

    env = gym.make("polyskill/MetaWorld-v0", task="reach-v3")
    unwrapped = env.unwrapped
    rng = np.random.default_rng(0)
    unwrapped.sample_task(rng)
    obs1, _ = env.reset(seed=1)
    vec1 = unwrapped._rand_vec.copy()
    env.reset()  # the trial's next episode: same goal
    assert np.array_equal(unwrapped._rand_vec, vec1)
    unwrapped.sample_task(rng)
    env.reset()
    assert not np.array_equal(unwrapped._rand_vec, vec1)  # next trial: a new goal
    assert obs1.dtype == np.float32 and np.all(obs1[-3:] == 0)
    steps, truncated = 0, False
    while not truncated:
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        steps += 1
        assert not terminated
    assert steps == 500 and "success" in info  # 500-step episodes
    env.close()


def test_metaworld_frees_idle_simulations_and_rebuilds_the_same_variation(monkeypatch) -> None:
    need("metaworld")
    from polyskill.trainer.envs import metaworld as mw

    monkeypatch.setattr(mw, "MAX_LIVE_SIMS", 2)
    envs = [mw.MetaWorldEnv(t) for t in ("reach-v3", "push-v3", "window-open-v3")]
    rng = np.random.default_rng(0)
    for env in envs:
        env.sample_task(rng)
    first, _ = envs[0].reset(seed=0)
    truncated = False
    while not truncated:  # episode over: envs[0] is idle, may be freed
        truncated = envs[0].step(np.zeros(4, np.float32))[3]
    envs[1].reset(seed=1)
    envs[2].reset(seed=2)  # over the cap: frees the idle one
    assert envs[0]._sim is None and mw.live_simulations() == 2
    again, _ = envs[0].reset()  # the trial's next episode, on a rebuilt simulation
    assert np.allclose(first, again) and mw.live_simulations() == 3  # others are mid-episode
    for env in envs:
        env.close()
    assert mw.live_simulations() == 0


def test_metaworld_train_reports_success(tmp_path: Path) -> None:
    need("metaworld")
    from polyskill.trainer.envs.metaworld import metaworld_tasks

    metrics = tiny_train(metaworld_tasks(["reach-v3"]), k=1, tmp_path=tmp_path, steps=200)
    assert "eval/reach-v3/success" in metrics and "eval/reach-v3/return" in metrics


def test_babyai_mission_tokens_and_two_attempt_trials(tmp_path: Path, capfd) -> None:
    need("minigrid")
    from polyskill.trainer.envs.babyai import BABYAI_VOCAB, babyai_tasks

    tasks = babyai_tasks(["GoToRedBallGrey", "GoToLocal"], max_length=16)
    spec, finished, replay = collect(tasks, k=2, steps=300, tmp_path=tmp_path)
    mission = spec["mission"]
    assert mission.kind == "text" and mission.vocab == BABYAI_VOCAB and mission.max_length == 16
    assert spec["image"].kind == "image" and spec["image"].shape == (7, 7, 3)
    assert spec["direction"].kind == "discrete"
    assert finished and all(len(t.episodes) == 2 for t in finished)
    assert all(e.success is not None for t in finished for e in t.episodes)
    batch = replay.sample(4, 8)
    ids = batch.obs["mission"]  # (B, L, 16) int64 word ids
    assert ids.dtype == np.int64 and ids.shape[-1] == 16 and ids.max() <= len(BABYAI_VOCAB)
    assert (ids > 0).any()
    image = batch.obs["image"]  # codes spread over 0..255 (the network divides by 255)
    assert image.dtype == np.uint8 and image.max() >= 100
    assert not (np.unique(image[..., 0]) % 23).any()
    assert "Sampling rejected" not in capfd.readouterr().out

    metrics = tiny_train(tasks, k=2, tmp_path=tmp_path, steps=200)
    assert "eval/babyai_GoToLocal/success_ep2" in metrics


def test_babyai_trial_replays_one_level_instance() -> None:
    need("minigrid")
    import gymnasium as gym

    import polyskill.trainer.envs  # noqa: F401

    env = gym.make("polyskill/BabyAI-v0", level="GoToLocal")
    env.unwrapped.sample_task(np.random.default_rng(0))
    first, _ = env.reset(seed=3)
    again, _ = env.reset()  # second attempt: same layout and mission
    assert all(np.array_equal(first[k], again[k]) for k in first)
    env.unwrapped.sample_task(np.random.default_rng(1))
    other, _ = env.reset()
    assert not all(np.array_equal(first[k], other[k]) for k in first)
    env.close()


def test_popgym_mixture_shares_padded_observations_and_actions(tmp_path: Path) -> None:
    need("popgym")
    from polyskill.trainer.envs.popgym import popgym_tasks

    names = ["AutoencodeEasy", "CountRecallEasy", "BattleshipEasy", "PositionOnlyPendulumEasy"]
    tasks = popgym_tasks(names)
    obs_space, act_space = probe_spaces(tasks)
    # Autoencode's Tuple(Discrete(2), Discrete(4)) one-hot is the widest (6); the others pad.
    assert obs_space.shape == (6,) and act_space.n == 64  # Battleship Easy: 8 x 8 cells
    spec, finished, _ = collect(tasks, k=1, steps=400, tmp_path=tmp_path, num_envs=4)
    assert spec["obs"].shape == (6,)
    assert finished and all(-1.0 - 1e-6 <= t.ret <= 1.0 + 1e-6 for t in finished)  # normalised
    metrics = tiny_train(popgym_tasks(["RepeatPreviousEasy", "AutoencodeEasy"]), 1, tmp_path)
    assert set(metrics) >= {"eval/popgym_RepeatPreviousEasy/return"}


def test_atari_games_share_frames_and_18_actions(tmp_path: Path) -> None:
    need("ale_py")
    need("cv2")
    from polyskill.trainer.envs.atari import atari_tasks

    tasks = atari_tasks(["Pong", "Breakout"], max_episode_steps=60)
    spec, finished, replay = collect(tasks, k=1, steps=150, tmp_path=tmp_path)
    assert spec["obs"].kind == "image" and spec["obs"].shape == (84, 84, 1)
    assert finished and all(len(t.episodes) == 1 for t in finished)
    assert replay.sample(2, 8).obs["obs"].dtype == np.uint8
    _, act_space = probe_spaces(atari_tasks(["Pong", "Qbert"], frame_stack=2))
    assert act_space.n == 18


def test_procgen_without_package_raises_a_clear_error() -> None:
    try:
        import procgen  # noqa: F401

        pytest.skip("procgen is installed here")
    except ImportError:
        pass
    import gymnasium as gym

    import polyskill.trainer.envs  # noqa: F401

    with pytest.raises(ImportError, match="numpy<2"):
        gym.make("polyskill/Procgen-v0", game="coinrun")


@pytest.mark.parametrize("name", ["metaworld-scales", "babyai", "popgym", "atari-multigame"])
def test_suite_presets_build_their_spaces(name: str) -> None:
    need({"metaworld-scales": "metaworld", "babyai": "minigrid", "popgym": "popgym",
          "atari-multigame": "ale_py"}[name])  # fmt: skip
    if name == "atari-multigame":
        need("cv2")
    cfg = get_preset(name)
    obs_space, act_space = probe_spaces(cfg.tasks)
    net = AgentNetwork(cfg.network, obs_spec_from_space(obs_space),
                       action_spec_from_space(act_space))  # fmt: skip
    assert net.obs_spec.fields


def test_missing_suite_package_names_the_extra(monkeypatch) -> None:
    import importlib.util

    import gymnasium as gym

    import polyskill.trainer.envs  # noqa: F401

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "metaworld" else real(name, *a))
    with pytest.raises(ImportError, match="suites"):
        gym.make("polyskill/MetaWorld-v0", task="reach-v3")
