"""`polyskill bench gpu`: the CUDA paths checked against the CPU and timed, in one short call.

    python -m polyskill.benchmarks.gpu --out runs/bench_gpu.json [--quick]

Sessions that are lent a GPU machine get a few minutes of it; this is the one command to run
there (docs/benchmarks.md, "GPU check", has the device command with the wheels it needs). For the
default network and CartPole-sized observations, per backend and device that this machine has
(torch on cpu / cuda; ONNX Runtime on its CPU / CUDA provider):

- parity with torch on the CPU over one trial of 4 sessions that runs past the context window
  (the KV ring slides) and starts new episodes: the largest difference of the acting
  distribution and the number of greedy actions that differ (the server's deterministic mode);
- speed: B=1 and B=256 cached steps (median), and the issue's (2) on that device: a cached step
  with a full 512-step window against recomputing the 512-step context.

Rows that this machine cannot run (no CUDA, no CUDA provider) are listed as skipped with the
reason, so the same command runs on a CPU machine (tests/unit/test_bench_gpu.py runs it there).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from .bare_model import bare_model, cache_vs_recompute, step_inputs
from .machine import describe

PARITY_TOL = 1e-4
"""Largest acceptable |p - p_cpu| of the acting distribution (float32 kernels differ by ~1e-6)."""


def targets() -> tuple[list[tuple[str, str]], dict[str, str]]:
    """(backend, device) pairs this machine runs, and why the others are skipped."""
    import torch

    run, skipped = [("torch", "cpu")], {}
    cuda = torch.cuda.is_available()
    if cuda:
        run.append(("torch", "cuda"))
    else:
        skipped["torch/cuda"] = "torch.cuda.is_available() is False"
    try:
        import onnxruntime as ort
    except ImportError as e:
        skipped["onnx/cpu"] = skipped["onnx/cuda"] = f"onnxruntime does not import ({e})"
        return run, skipped
    run.append(("onnx", "cpu"))
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        skipped["onnx/cuda"] = ("no CUDAExecutionProvider in onnxruntime "
                                f"{ort.__version__} (install onnxruntime-gpu)")
    elif not cuda:
        skipped["onnx/cuda"] = "the CUDA provider needs a CUDA torch for the KV cache"
    else:
        run.append(("onnx", "cuda"))
    return run, skipped


def trial_parity(ckpt: str, kind: str, device: str, steps: int, batch: int = 4
                 ) -> dict[str, float | int]:
    """Step torch-on-CPU and (kind, device) through the same trial; compare what they act on."""
    from polyskill.server.models import load_backend

    ref, other = (load_backend(k, ckpt, batch, d) for k, d in (("torch", "cpu"), (kind, device)))
    rng = np.random.default_rng(0)
    prev = np.zeros(batch, np.int64)
    worst, differ = 0.0, 0
    for t in range(steps):
        inputs = step_inputs(batch, t, rng)
        inputs.prev_action = prev
        inputs.prev_reward = rng.normal(size=batch).astype(np.float32)
        inputs.new_episode = np.full(batch, t % 20 == 0)  # 20-step episodes of one trial
        p_ref, p = ref.step(inputs).probs, other.step(inputs).probs  # (B, n)
        worst = max(worst, float(np.abs(p - p_ref).max()))
        prev = p_ref.argmax(-1)
        differ += int((p.argmax(-1) != prev).sum())
    return {"max_abs_prob_diff": worst, "greedy_actions_differ": differ,
            "greedy_actions": steps * batch, "parity_ok": worst <= PARITY_TOL}


def measure(ckpt: str, ckpt512: str, kind: str, device: str, quick: bool) -> dict[str, object]:
    """Parity (against torch on the CPU) and step times of one backend on one device."""
    from polyskill.agent.checkpoint import read_meta

    context = read_meta(ckpt)["network"]["context_length"]  # the config, not the weights
    n1, n256 = (100, 10) if quick else (1000, 50)
    row: dict[str, object] = {"backend": kind, "device": device}
    if (kind, device) != ("torch", "cpu"):
        row.update(trial_parity(ckpt, kind, device, steps=3 * context))
    b1 = bare_model(ckpt, 1, n1, backend=kind, device=device)[n1 // 10:]
    b256 = bare_model(ckpt, 256, n256, backend=kind, device=device)[1:]
    row["b1_step_ms"] = float(np.median(b1)) * 1e3
    row["b256_pass_ms"] = float(np.median(b256)) * 1e3
    row["b256_steps_s"] = 256 / float(np.median(b256))
    row.update(cache_vs_recompute(ckpt512, 512, 30 if quick else 300, [kind], device))
    return row


def _table(rows: list[dict], skipped: dict[str, str]) -> str:
    head = (f"{'backend/device':16s} {'parity max|dp|':>15s} {'greedy differ':>14s} "
            f"{'B=1 ms':>8s} {'B=256 ms':>9s} {'steps/s':>9s} {'cached@512':>11s} "
            f"{'recompute':>10s} {'(2) >= 50':>10s}")
    lines = [head]
    for r in rows:
        kind = r["backend"]
        parity = ("reference" if "max_abs_prob_diff" not in r
                  else f"{r['max_abs_prob_diff']:.1e} {'ok' if r['parity_ok'] else 'BAD'}")
        differ = ("-" if "greedy_actions_differ" not in r
                  else f"{r['greedy_actions_differ']} of {r['greedy_actions']}")
        lines.append(
            f"{kind + '/' + r['device']:16s} {parity:>15s} {differ:>14s} "
            f"{r['b1_step_ms']:8.3f} {r['b256_pass_ms']:9.2f} {r['b256_steps_s']:9.0f} "
            f"{r[f'cached_step_{kind}_ms']:11.3f} {r['recompute_torch_ms']:10.2f} "
            f"{r[f'cache_speedup_{kind}']:10.1f}")
    lines += [f"{name:16s} skipped: {why}" for name, why in skipped.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="polyskill bench gpu", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/bench_gpu.json", help="JSON results file")
    p.add_argument("--quick", action="store_true", help="fewer timed steps (noisier)")
    args = p.parse_args(argv)
    import gymnasium as gym
    import torch

    from polyskill.server.testing import make_checkpoint

    torch.set_num_threads(1)
    env = gym.make("CartPole-v1")
    run, skipped = targets()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = make_checkpoint(f"{tmp}/default", env.observation_space, env.action_space)
        ckpt512 = make_checkpoint(f"{tmp}/default512", env.observation_space, env.action_space,
                                  context_length=512)
        if any(kind == "onnx" for kind, _ in run):
            from polyskill.agent.export_onnx import export_checkpoint

            export_checkpoint(ckpt)
            export_checkpoint(ckpt512)
        for kind, device in run:
            rows.append(measure(ckpt, ckpt512, kind, device, args.quick))
            print(f"measured {kind}/{device}", file=sys.stderr, flush=True)
    result = {"machine": describe(), "parity_tolerance": PARITY_TOL, "rows": rows,
              "skipped": skipped}
    print(_table(rows, skipped))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0 if all(r.get("parity_ok", True) for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
