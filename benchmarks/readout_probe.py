"""How each critic read-out values a trained run's replay windows, per task.

    python -m polyskill.benchmarks.readout_probe RUN_DIR [--windows 512]

For the latest checkpoint of RUN_DIR (a `polyskill train` or `bench barrier` run directory), it
samples replay windows, takes the critic ensemble's bin distributions for every action, and
prints per task and discount: the value under each read-out ("symlog", "mean", "trimmed"), the
probability mass on far bins (|value| > 100) and what that mass adds to the mean, the spread of
the mean over actions, and how often each read-out's best action agrees with the symlog one's.
It is how docs/results/barrier.md found a dark room's far bins swamping the bandit's values in a
mix (the reason for the "trimmed" read-out). Diagnostic only: nothing here trains.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from polyskill.agent.checkpoint import load_network
from polyskill.benchmarks.replay_windows import replay_windows
from polyskill.trainer.batch import TensorBatch
from polyskill.trainer.loop import RunDir

FAR = 100.0
DECODES = ("symlog", "mean", "trimmed")


def _bin_probs(run_dir: Path, windows: int) -> tuple[object, torch.Tensor, torch.Tensor, list]:
    """(network, probs (B, T, G, A, K) averaged over critics, action mask (B, T), tasks (B,))."""
    net = load_network(RunDir(run_dir).latest_checkpoint()).eval()
    if net.cfg.agent != "amago2" or net.action_spec.kind != "discrete":
        raise SystemExit("the probe reads amago2 runs with discrete actions")
    raw = replay_windows(run_dir, windows)
    b = TensorBatch.from_numpy(raw)
    with torch.no_grad():
        h = net.features(b.obs, b.prev_actions, b.prev_rewards, b.new_episode, b.positions)
        logits = net.critics(h[:, :-1])  # (C, B, T, G, A, K)
    return net, torch.softmax(logits, -1).mean(0), b.action_mask[:, :-1], list(raw.tasks)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--windows", type=int, default=512)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    net, probs, mask, tasks = _bin_probs(args.run_dir, args.windows)
    bins = net.bins
    far = (bins.values.abs() > FAR).to(probs.dtype)  # (K,)
    print("task | gamma | value symlog / mean / trimmed | far mass | far part of mean | "
          "mean's spread over actions | best action = symlog's: mean / trimmed")
    for task in sorted(set(tasks)):
        rows = mask & torch.tensor([t == task for t in tasks])[:, None]  # (B, T)
        for g, gamma in enumerate(net.cfg.gammas):
            pg = probs[..., g, :, :][rows]  # (N, A, K)
            value = {d: bins.decode_probs(pg, d) for d in DECODES}  # each (N, A)
            spread = value["mean"].amax(-1) - value["mean"].amin(-1)
            best = value["symlog"].argmax(-1)
            agree = [(value[d].argmax(-1) == best).float().mean().item() for d in DECODES[1:]]
            print(
                f"{task} | {gamma} | {value['symlog'].mean():.4g} / {value['mean'].mean():.4g} / "
                f"{value['trimmed'].mean():.4g} | {(pg * far).sum(-1).mean():.2e} | "
                f"{((pg * far) @ bins.values).mean():.4g} | {spread.mean():.4g} | "
                f"{agree[0]:.2f} / {agree[1]:.2f}"
            )


if __name__ == "__main__":
    main()
