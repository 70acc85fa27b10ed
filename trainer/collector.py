"""Acting in N envs at once with the policy and its KV cache; finished trials go to the replay.

Each vector-env slot plays trials of k episodes; the cache slot of an env restarts (position 0)
only when its trial ends, so context spans every episode of a trial. Exploration is epsilon-greedy
on the executed action (uniform random for discrete, Gaussian noise for continuous actions), and
the replay stores the executed action. Evaluation uses the same class with epsilon 0 and
deterministic actions.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from polyskill.agent.policy import Policy, StepInputs
from polyskill.agent.spaces import ActionSpec, ObsSpec, batch_observations, single_observation

from .replay import ReplayBuffer


@dataclass
class EpisodeRecord:
    task: str
    episode_number: int  # 1-based index within the trial
    ret: float
    success: float | None


@dataclass
class TrialRecord:
    task: str
    episodes: list[EpisodeRecord] = field(default_factory=list)

    @property
    def ret(self) -> float:
        return sum(e.ret for e in self.episodes)


class _Trajectory:
    """Per-env growing record of one trial, in the replay's format."""

    def __init__(self, first_obs: dict[str, np.ndarray]) -> None:
        self.obs = defaultdict(list, {k: [v] for k, v in first_obs.items()})
        self.actions: list[np.ndarray] = []
        self.rewards: list[float] = []
        self.new_episode = [True]
        self.terminated: list[bool] = []

    def add(
        self,
        action,
        reward: float,
        next_obs: dict[str, np.ndarray],
        new_episode: bool,
        terminated: bool,
    ) -> None:
        self.actions.append(action)
        self.rewards.append(reward)
        self.terminated.append(terminated)
        self.new_episode.append(new_episode)
        for k, v in next_obs.items():
            self.obs[k].append(v)

    def arrays(self) -> dict[str, np.ndarray]:
        out = {f"obs/{k}": np.stack(v) for k, v in self.obs.items()}  # (T+1, ...)
        out["actions"] = np.stack(self.actions)  # (T, ...)
        out["rewards"] = np.asarray(self.rewards, np.float32)
        out["new_episode"] = np.asarray(self.new_episode, bool)
        out["terminated"] = np.asarray(self.terminated, bool)
        return out


def _row(obs: dict[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    return {k: v[i].copy() for k, v in obs.items()}


class Collector:
    def __init__(
        self,
        envs: gym.vector.VectorEnv,
        policy: Policy,
        obs_spec: ObsSpec,
        action_spec: ActionSpec,
        replay: ReplayBuffer | None,
        seed: int,
        deterministic: bool = False,
        continuous_noise: float = 0.3,
        randomize_epsilon: bool = False,
    ) -> None:
        """`randomize_epsilon`: each env slot explores with u * epsilon, u ~ U[0, 1] drawn anew
        for every trial (as AMAGO does), so the replay always holds data from near-greedy to
        near-random behaviour whatever the schedule has reached."""
        assert policy.num_slots >= envs.num_envs
        self.envs, self.policy, self.replay = envs, policy, replay
        self.obs_spec, self.action_spec = obs_spec, action_spec
        self.continuous_noise = continuous_noise
        N = self.num_envs = envs.num_envs
        self.rngs = [np.random.default_rng([seed, i]) for i in range(N)]
        self.randomize_epsilon = randomize_epsilon
        self.eps_scale = np.array([self._draw_eps_scale(i) for i in range(N)])  # (N,)
        self.deterministic = np.full(N, deterministic)
        obs, info = envs.reset(seed=seed)
        self.obs = batch_observations(obs_spec, obs)
        self.tasks = list(info.get("task", [""] * N))
        self.positions = np.zeros(N, np.int64)
        discrete = action_spec.kind == "discrete"
        self.prev_action = (
            np.zeros(N, np.int64) if discrete else np.zeros((N, action_spec.dim), np.float32)
        )
        self.prev_reward = np.zeros(N, np.float32)
        self.new_episode = np.ones(N, bool)
        self.trajs = [_Trajectory(_row(self.obs, i)) for i in range(N)]
        self.open_trials = [TrialRecord(self.tasks[i]) for i in range(N)]

    def _draw_eps_scale(self, i: int) -> float:
        return float(self.rngs[i].random()) if self.randomize_epsilon else 1.0

    def _explore(self, actions: np.ndarray, epsilon: float) -> np.ndarray:
        for i, rng in enumerate(self.rngs):
            if epsilon <= 0 or rng.random() >= epsilon * self.eps_scale[i]:
                continue
            if self.action_spec.kind == "discrete":
                actions[i] = rng.integers(self.action_spec.n)
            else:
                low, high = np.asarray(self.action_spec.low), np.asarray(self.action_spec.high)
                noise = rng.normal(0, self.continuous_noise, actions.shape[-1]) * (high - low) / 2
                actions[i] = np.clip(actions[i] + noise, low, high)
        return actions

    def step(self, epsilon: float = 0.0) -> list[tuple[int, TrialRecord]]:
        """One vector step for every env; returns (env index, trial) for trials that finished."""
        params = self.policy.step(
            StepInputs(
                self.obs, self.prev_action, self.prev_reward, self.new_episode, self.positions
            )
        )
        actions = self._explore(params.select(self.deterministic, self.rngs), epsilon)
        raw_obs, rewards, terminated, truncated, info = self.envs.step(actions)
        next_obs = batch_observations(self.obs_spec, raw_obs)
        done = terminated | truncated
        step_info = info.get("final_info", {}) if done.any() else {}
        finished = []
        for i in range(self.num_envs):
            src = step_info if done[i] else info
            if src.get("_episode_number", np.zeros(self.num_envs, bool))[i]:
                success = src.get("episode_success")
                has_success = success is not None and src.get("_episode_success")[i]
                self.open_trials[i].episodes.append(
                    EpisodeRecord(
                        self.tasks[i],
                        int(src["episode_number"][i]),
                        float(src["episode_return"][i]),
                        float(success[i]) if has_success else None,
                    )
                )
            if done[i]:
                final_obs = single_observation(self.obs_spec, info["final_obs"][i])
                self.trajs[i].add(
                    actions[i], float(rewards[i]), final_obs, False, bool(terminated[i])
                )
                if self.replay is not None:
                    self.replay.add(self.trajs[i].arrays(), task=self.tasks[i])
                finished.append((i, self.open_trials[i]))
                self.tasks[i] = str(info["task"][i]) if "task" in info else ""
                self.open_trials[i] = TrialRecord(self.tasks[i])
                self.trajs[i] = _Trajectory(_row(next_obs, i))
                self.eps_scale[i] = self._draw_eps_scale(i)
            else:
                new_ep = bool(info.get("new_episode", np.zeros(self.num_envs, bool))[i])
                self.trajs[i].add(actions[i], float(rewards[i]), _row(next_obs, i), new_ep, False)
        self.positions = np.where(done, 0, self.positions + 1)
        self.prev_action = np.where(done.reshape(-1, *[1] * (actions.ndim - 1)), 0, actions).astype(
            self.prev_action.dtype
        )
        self.prev_reward = np.where(done, 0.0, rewards).astype(np.float32)
        self.new_episode = done | info.get("new_episode", np.zeros(self.num_envs, bool))
        self.obs = next_obs
        return finished

    def flush(self) -> None:
        """Write the trials in progress as truncated trajectories (on shutdown: lose no data)."""
        if self.replay is None:
            return
        for i, traj in enumerate(self.trajs):
            if traj.actions:
                self.replay.add(traj.arrays(), task=self.tasks[i])
