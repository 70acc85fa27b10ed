"""On the point task, whose goal the probe knows: does the critic rank moves towards the goal
highest, and does the greedy actor move that way?

    python -m polyskill.benchmarks.point_probe RUN_DIR [--trials 16]

For every checkpoint of RUN_DIR (a `polyskill train --preset point` run), the greedy policy plays
trials of the `point` task; at every step the acting head's critic scores 16 moves of unit length
in evenly spread directions, and the probe reports, per episode of the trial, the mean cosine
between the direction to the hidden goal and (a) the critic's best move, (b) the greedy action;
1 = straight at the goal, 0 = unrelated. Also the critic's typical value (against the greedy
trials' own discounted return-to-go: acting discount, rewards times the TD target's multiplier),
its spread over the 16 moves, and the actor's pre-tanh std. It is how docs/results/barrier.md
("point") told a critic that does not rank moves from an actor that does not follow its critic.
Diagnostic only: nothing here trains.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import polyskill.trainer.envs  # noqa: F401 - registers polyskill/PointGoal-v0
from polyskill.agent.checkpoint import load_network
from polyskill.agent.network import AgentNetwork

NUM_MOVES = 16


def _unit(v: np.ndarray) -> np.ndarray:
    return v / (np.linalg.norm(v) + 1e-9)


def probe(net: AgentNetwork, trials: int, episodes: int = 3, seed: int = 0,
          reward_multiplier: float = 10.0) -> dict[str, float]:
    angles = np.linspace(0.0, 2 * np.pi, NUM_MOVES, endpoint=False)
    moves = torch.tensor(np.stack([np.cos(angles), np.sin(angles)], -1), dtype=torch.float32)
    env = gym.make("polyskill/PointGoal-v0").unwrapped
    assert episodes * env.max_steps < net.cfg.context_length, "the trial must fit the context"
    rng = np.random.default_rng(seed)
    critic_cos: dict[int, list[float]] = {k: [] for k in range(1, episodes + 1)}
    actor_cos: dict[int, list[float]] = {k: [] for k in range(1, episodes + 1)}
    values, returns_to_go, spreads, stds = [], [], [], []
    gamma = float(net.gammas[-1])
    for _ in range(trials):
        rewards: list[float] = []
        env.sample_task(rng)
        seq: dict[str, list] = {"obs": [], "prev_action": [], "prev_reward": [], "new": []}
        prev_action, prev_reward = np.zeros(2, np.float32), 0.0
        for episode in range(1, episodes + 1):
            obs, _ = env.reset()
            for k in range(env.max_steps):
                for key, x in zip(seq, (obs, prev_action, prev_reward, k == 0), strict=True):
                    seq[key].append(x)
                with torch.no_grad():
                    h = net.features(
                        {"obs": torch.tensor(np.array(seq["obs"]))[None]},
                        torch.tensor(np.array(seq["prev_action"]))[None],
                        torch.tensor(seq["prev_reward"], dtype=torch.float32)[None],
                        torch.tensor(seq["new"])[None],
                        torch.arange(len(seq["obs"]))[None],
                    )[0, -1]  # (D,)
                    dist = net.actor(h[None])  # batch (1, G)
                    action = dist.mode()[0, -1].numpy()  # (2,)
                    q = net.critic_values(
                        net.critics(h.expand(NUM_MOVES, -1), net.action_input(moves)[:, None])
                    ).mean(0)[:, -1].numpy()  # (NUM_MOVES,)
                to_goal = _unit(env.goal - env.pos)
                critic_cos[episode].append(float(moves[q.argmax()].numpy() @ to_goal))
                actor_cos[episode].append(float(_unit(action) @ to_goal))
                values.append(float(q.mean()))
                spreads.append(float(q.max() - q.min()))
                stds.append(float(dist.std[0, -1].mean()))
                obs, prev_reward, _, _, _ = env.step(action)
                prev_action = action.astype(np.float32)
                rewards.append(reward_multiplier * prev_reward)
        to_go = 0.0
        for r in reversed(rewards):  # the trial's return-to-go at each of its steps
            to_go = r + gamma * to_go
            returns_to_go.append(to_go)
    out = {f"critic_cos_ep{k}": float(np.mean(v)) for k, v in critic_cos.items()}
    out |= {f"actor_cos_ep{k}": float(np.mean(v)) for k, v in actor_cos.items()}
    out |= {"value": float(np.median(values)), "return_to_go": float(np.median(returns_to_go)),
            "spread": float(np.median(spreads)), "actor_std": float(np.mean(stds))}  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--trials", type=int, default=16)
    args = p.parse_args(argv)
    print("checkpoint | cos(critic's best move, to goal) ep 1/2/3 | cos(greedy action, to goal) "
          "ep 1/2/3 | value / return-to-go (medians) | spread over moves | actor pre-tanh std")
    for ck in sorted((args.run_dir / "checkpoints").glob("step-*")):
        s = probe(load_network(ck).eval(), args.trials)
        print(f"{ck.name} | {s['critic_cos_ep1']:+.2f} / {s['critic_cos_ep2']:+.2f} / "
              f"{s['critic_cos_ep3']:+.2f} | {s['actor_cos_ep1']:+.2f} / {s['actor_cos_ep2']:+.2f}"
              f" / {s['actor_cos_ep3']:+.2f} | {s['value']:.1f} / {s['return_to_go']:.1f} | "
              f"{s['spread']:.1f} | {s['actor_std']:.2f}")


if __name__ == "__main__":
    main()
