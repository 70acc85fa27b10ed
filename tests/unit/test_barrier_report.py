"""The barrier report on a suite with success flags and a scripted expert (Meta-World): chance and
expert come from the suite's table, per trial, and the markdown gets their columns."""

import argparse
import json
from pathlib import Path

import pytest

from polyskill.benchmarks.barrier import RunResult, _chance, _config, report, write
from polyskill.trainer.envs.metaworld import reference_returns


def _eval(task: str, ret: float, success: float) -> dict[str, float]:
    return {f"eval/{task}/return": ret, f"eval/{task}/return_ep1": ret / 4,
            f"eval/{task}/return_ep3": ret / 3, f"eval/{task}/success": success}


def test_metaworld_report_normalises_by_the_suite_table_and_shows_success(tmp_path: Path) -> None:
    cfg = _config("metaworld-scales", 1_000, 0, "amago2", {})
    k = cfg.episodes_per_trial
    tasks = [t.name for t in cfg.tasks]
    # no checkpoint needed: continuous tasks take chance from the table, k episodes per trial
    chance = _chance(cfg, tmp_path, trials=16)
    assert chance["reach-v3"] == pytest.approx(k * reference_returns("reach-v3")["random"])

    reach_random = chance["reach-v3"]
    reach_expert = k * reference_returns("reach-v3")["expert"]
    midway = (reach_random + reach_expert) / 2
    results = {
        "amago2/seed0": RunResult("amago2/seed0", 600, 1_000,
                                  {**_eval("reach-v3", midway, 0.25)}),
        "baseline/seed0": RunResult("baseline/seed0", 1_000, 1_000,
                                    {**_eval("reach-v3", reach_random, 0.0)}),
        "reference/reach-v3/seed0": RunResult("reference/reach-v3/seed0", 1_000, 1_000,
                                              {**_eval("reach-v3", midway * 1.2, 0.5)}),
    }
    args = argparse.Namespace(seeds=[0], preset="metaworld-scales", rescale={}, overrides=[],
                              steps=1_000, eval_trials=16)
    summary = report(args, results, tasks, k, chance)
    rows = {(r["agent"], r["task"]): r for r in summary["rows"]}
    amago = rows[("amago2", "reach-v3")]
    assert amago["normalised_expert"] == pytest.approx(0.5)
    assert amago["success"] == 0.25 and amago["reference_success"] == 0.5
    assert amago["normalised"] == pytest.approx(1 / 1.2)
    assert rows[("baseline", "reach-v3")]["normalised_expert"] == pytest.approx(0.0)
    # tasks without runs still get a row (every agent x task), with nothing measured
    assert rows[("amago2", "window-open-v3")]["return"] is None

    write(summary, tmp_path / "out", "mw")
    md = (tmp_path / "out" / "mw.md").read_text()
    assert "success (reference)" in md and "| 0.25 (0.50) | 0.50 |" in md
    assert "Partial runs" in md and "amago2/seed0" in md.split("Partial runs")[1]  # 600 < 1,000
    assert json.loads((tmp_path / "out" / "mw.json").read_text())["rows"] == summary["rows"]


def test_reference_table_covers_the_scales_set_and_nothing_else() -> None:
    for task in ("reach-v3", "button-press-v3", "coffee-button-v3", "window-open-v3"):
        ref = reference_returns(task)
        assert ref is not None and ref["expert"] > ref["random"] >= 0
    assert reference_returns("bandit") is None
