"""Does a continuous actor drift to its action bounds, and which replay actions pull it there?

    python -m polyskill.benchmarks.actor_probe RUN_DIR [--windows 16]

For every checkpoint of RUN_DIR (a `polyskill train` or `bench barrier` run with continuous
actions), on the same replay windows: how many executed action components sit on the bounds
(exploration noise is clipped there) or beyond 95 % of them; the acting head's pre-tanh mean and
std, and how often its greedy action is beyond 95 %; how often the actor's filter (A > 0) keeps
steps with a component on a bound against steps without; and the filtered behaviour cloning's
pull on the pre-tanh mean (its negative gradient, signed outward = away from 0, per filtered
component), split into the part from components on a bound and the rest, with the actions read
as `TanhGaussian.log_prob` reads them. It is how docs/results/barrier.md traced amago2's
Meta-World arm going to a corner. Diagnostic only: nothing here trains.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from polyskill.agent.checkpoint import load_network
from polyskill.agent.heads import BC_ACTION_LIMIT
from polyskill.benchmarks.replay_windows import replay_windows
from polyskill.trainer.batch import TensorBatch
from polyskill.trainer.losses import sampled_value

ON_BOUND = 0.999  # |action| in [-1, 1] units at or past this counts as clipped to the bound
NEAR = 0.95


def probe(checkpoint: Path, b: TensorBatch, num_actor_samples: int = 3) -> dict[str, float]:
    """The statistics above for one checkpoint on windows `b` (acting head = last discount)."""
    net = load_network(checkpoint).eval()
    if net.action_spec.kind != "continuous":
        raise SystemExit("the actor probe reads runs with continuous actions")
    with torch.no_grad():
        h = net.features(b.obs, b.prev_actions, b.prev_rewards, b.new_episode, b.positions)
        h_t, mask = h[:, :-1], b.action_mask[:, :-1]  # (B, T, D), (B, T)
        y = net.action_input(b.actions[:, :-1])  # (B, T, A) in [-1, 1]
        dist = net.actor(h_t)  # batch (B, T, G)
        q = net.critic_values(net.critics(h_t, y.unsqueeze(-2))).mean(0)[..., -1]  # (B, T)
        v = sampled_value(net, h_t, dist, num_actor_samples)[..., -1]  # (B, T)
    mean, std = dist.mean[..., -1, :], dist.std[..., -1, :]  # (B, T, A) pre-tanh
    bound = y.abs() >= ON_BOUND  # (B, T, A)
    kept = (q > v) & mask  # (B, T): steps the filtered BC imitates
    u = torch.atanh(y.clamp(-BC_ACTION_LIMIT, BC_ACTION_LIMIT))
    pull = (torch.sign(mean) * (u - mean) / std**2)[kept]  # (N, A) outward pull per component
    on = bound[kept]
    n = max(pull.numel(), 1)
    step_on = bound.any(-1)
    return {
        "on_bound": bound[mask].float().mean().item(),
        "beyond_95": (y.abs() > NEAR)[mask].float().mean().item(),
        "mean_abs": mean[mask].abs().mean().item(),
        "std": std[mask].mean().item(),
        "greedy_beyond_95": (torch.tanh(mean).abs() > NEAR)[mask].float().mean().item(),
        "kept_on_bound": (q > v)[mask & step_on].float().mean().item(),
        "kept_inside": (q > v)[mask & ~step_on].float().mean().item(),
        "pull_on_bound": (pull[on].sum() / n).item(),
        "pull_inside": (pull[~on].sum() / n).item(),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--windows", type=int, default=16)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    b = TensorBatch.from_numpy(replay_windows(args.run_dir, args.windows))
    print("checkpoint | on bound / beyond 95% (replay) | pre-tanh |mean| / std | greedy beyond "
          "95% | kept: steps on a bound / inside | outward pull: from on-bound / inside")
    for ck in sorted((args.run_dir / "checkpoints").glob("step-*")):
        s = probe(ck, b)
        print(f"{ck.name} | {s['on_bound']:.2f} / {s['beyond_95']:.2f} | {s['mean_abs']:.2f} / "
              f"{s['std']:.2f} | {s['greedy_beyond_95']:.2f} | {s['kept_on_bound']:.2f} / "
              f"{s['kept_inside']:.2f} | {s['pull_on_bound']:+.3f} / {s['pull_inside']:+.3f}")


if __name__ == "__main__":
    main()
