"""Evaluation on fresh task samples: deterministic actions, no exploration, per-task metrics.

Metric keys: eval/<task>/return (whole trial), eval/<task>/return_ep<k> (episode k of the trial,
1-based), eval/<task>/success and success_ep<k> where the env reports success, and
eval/mean_return.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from polyskill.agent.network import AgentNetwork
from polyskill.agent.policy import Policy

from .collector import Collector, TrialRecord
from .envs.multitask import TaskSpec
from .vector import make_vector_env


def run_trials(
    network: AgentNetwork,
    tasks: list[TaskSpec],
    task: str,
    episodes_per_trial: int,
    num_trials: int,
    seed: int,
    device: torch.device | str = "cpu",
    max_steps: int = 100_000,
    epsilon: float = 0.0,
) -> list[TrialRecord]:
    """Play `num_trials` trials of `task` in parallel (one env each) and return their records.

    `epsilon` 1.0 with discrete actions plays uniformly at random: the chance level of a task."""
    envs = make_vector_env(tasks, episodes_per_trial, num_trials, fixed_task=task)
    try:
        collector = Collector(
            envs,
            Policy(network, num_trials, device),
            network.obs_spec,
            network.action_spec,
            replay=None,
            seed=seed,
            deterministic=True,
        )
        first: dict[int, TrialRecord] = {}  # env index -> its first finished trial (no bias
        for _ in range(max_steps):  # towards short trials, which would finish twice meanwhile)
            for i, record in collector.step(epsilon=epsilon):
                first.setdefault(i, record)
            if len(first) == num_trials:
                break
        else:
            raise RuntimeError(
                f"evaluation of {task!r}: trials did not end within {max_steps} steps"
            )
        return [first[i] for i in range(num_trials)]
    finally:
        envs.close()


def summarize(task: str, trials: list[TrialRecord]) -> dict[str, float]:
    out: dict[str, float] = {f"eval/{task}/return": float(np.mean([t.ret for t in trials]))}
    by_ep: dict[int, list[float]] = defaultdict(list)
    succ_ep: dict[int, list[float]] = defaultdict(list)
    for t in trials:
        for e in t.episodes:
            by_ep[e.episode_number].append(e.ret)
            if e.success is not None:
                succ_ep[e.episode_number].append(e.success)
    for k, v in sorted(by_ep.items()):
        out[f"eval/{task}/return_ep{k}"] = float(np.mean(v))
    if succ_ep:
        out[f"eval/{task}/success"] = float(np.mean([s for v in succ_ep.values() for s in v]))
        for k, v in sorted(succ_ep.items()):
            out[f"eval/{task}/success_ep{k}"] = float(np.mean(v))
    return out


def evaluate(
    network: AgentNetwork,
    tasks: list[TaskSpec],
    episodes_per_trial: int,
    trials_per_task: int,
    seed: int,
    device: torch.device | str = "cpu",
    epsilon: float = 0.0,
) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for i, spec in enumerate(tasks):
        trials = run_trials(
            network,
            tasks,
            spec.name,
            episodes_per_trial,
            trials_per_task,
            seed=seed + 1000 * i,
            device=device,
            epsilon=epsilon,
        )
        metrics.update(summarize(spec.name, trials))
    returns = [metrics[f"eval/{t.name}/return"] for t in tasks]
    metrics["eval/mean_return"] = float(np.mean(returns))
    return metrics
