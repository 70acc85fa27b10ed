"""`polyskill bench train`: training speed and learning on the fixed CartPole comparison config.

    polyskill bench train [--minutes 8] [--out benchmarks/results/train.json]

Config (issue 2): CartPole-v1, 4 sync envs, transformer 2 layers / d_model 128 / 8 heads /
d_ff 512, context 64, batch 24 x 64, 4 critics, 7 discounts, 1 torch thread. Reports env-steps/s,
updates/s, peak RSS and the eval return at the end, each against its target, plus the bare
vector-env step rate measured in the same run (how much of the budget acting and learning take).
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from .machine import describe

TARGETS = {"env_steps_per_s": 1700.0, "updates_per_s": 5.0, "eval_return": 150.0}


def bare_env_rate(seconds: float = 3.0) -> float:
    envs = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")] * 4)
    envs.reset(seed=0)
    rng, n, t0 = np.random.default_rng(0), 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        envs.step(rng.integers(0, 2, 4))
        n += 4
    envs.close()
    return n / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    from polyskill.trainer.config import apply_overrides
    from polyskill.trainer.loop import RunDir, train
    from polyskill.trainer.presets import cartpole

    p = argparse.ArgumentParser(prog="polyskill bench train", description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=8.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/train.json"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting of the cartpole preset (not the fixed network)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    cfg = apply_overrides(cartpole(), args.set)
    cfg.max_seconds, cfg.seed, cfg.eval_every_steps = args.minutes * 60, args.seed, 10**12
    cfg.total_steps = 10**12  # the clock ends the run, not a step count
    cfg.eval_trials_per_task = 16
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        metrics = train(cfg, Path(tmp) / "run", track=False)
        wall = time.perf_counter() - t0
        latest = RunDir(Path(tmp) / "run").latest_checkpoint()
        counters = json.loads((latest / "counters.json").read_text())
    measured = {
        "env_steps_per_s": counters["env_steps"] / wall,
        "updates_per_s": counters["updates"] / wall,
        "eval_return": metrics["eval/cartpole/return"],
    }
    result = {
        "machine": describe(),
        "minutes": args.minutes,
        "overrides": args.set,
        "env_steps": counters["env_steps"],
        "updates": counters["updates"],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        # the collector process (collector=process), once joined: the largest child's peak
        "peak_rss_children_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "bare_vector_env_steps_per_s": bare_env_rate(),
        **measured,
        "ratio_to_target": {k: measured[k] / TARGETS[k] for k in TARGETS},
    }
    print(f"{'metric':22s} {'measured':>10s} {'target':>8s} {'ratio':>6s}")
    for k, target in TARGETS.items():
        print(f"{k:22s} {measured[k]:10.1f} {target:8.1f} {measured[k] / target:6.2f}")
    print(f"{'peak_rss_mib':22s} {result['peak_rss_mib']:10.0f}")
    print(f"{'peak_rss_children_mib':22s} {result['peak_rss_children_mib']:10.0f}")
    print(f"{'bare env steps/s':22s} {result['bare_vector_env_steps_per_s']:10.0f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0
