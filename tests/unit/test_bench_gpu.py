"""`polyskill bench gpu` on a machine without CUDA: the CPU rows are measured (ONNX Runtime against
torch over a trial that slides the KV window), the CUDA rows are skipped with the reason, so the
command a GPU session runs is known to work before the GPU time is spent."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from polyskill.agent.config import NetworkConfig
from polyskill.benchmarks.gpu import PARITY_TOL, main


def test_bench_gpu_measures_what_this_machine_has_and_names_what_it_skips(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    assert main(["--quick", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = {f"{r['backend']}/{r['device']}": r for r in result["rows"]}
    assert "torch/cpu" in rows
    for name, row in rows.items():
        assert row["b1_step_ms"] > 0 and row["b256_steps_s"] > 0
        assert row["recompute_torch_ms"] > row[f"cached_step_{row['backend']}_ms"]
        if name != "torch/cpu":  # compared with torch on the CPU over the whole trial
            # 4 sessions, three windows long: the ring slides twice
            assert row["greedy_actions"] == 3 * NetworkConfig().context_length * 4
            assert row["max_abs_prob_diff"] <= PARITY_TOL and row["parity_ok"]
            assert row["greedy_actions_differ"] == 0
    if not torch.cuda.is_available():
        assert "torch/cuda" not in rows and "cuda" in result["skipped"]["torch/cuda"]
    assert set(rows) | set(result["skipped"]) == {"torch/cpu", "torch/cuda", "onnx/cpu",
                                                  "onnx/cuda"}
