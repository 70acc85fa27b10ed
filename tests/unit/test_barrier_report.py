"""The barrier report on a suite with success flags and a scripted expert (Meta-World): chance and
expert come from the suite's table, per trial, and the markdown gets their columns."""

import argparse
import json
from pathlib import Path

import pytest

from polyskill.benchmarks.barrier import _chance, _config
from polyskill.benchmarks.barrier_report import (
    RunResult,
    above_chance_of_means,
    plot,
    recorded_report,
    recorded_runs,
    report,
    with_unrescaled,
    write,
)
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
    assert amago["reference_return"] == pytest.approx(midway * 1.2)
    # tasks without runs still get a row (every agent x task), with nothing measured
    assert rows[("amago2", "window-open-v3")]["return"] is None
    # a reference trained before its mix run shows in the table on its own
    only_ref = {"reference/reach-v3/seed0": results["reference/reach-v3/seed0"]}
    row = report(args, only_ref, tasks, k, chance)["rows"][0]
    assert row["return"] is None and row["reference_return_per_seed"] == [midway * 1.2]

    write(summary, tmp_path / "out", "mw")
    md = (tmp_path / "out" / "mw.md").read_text()
    assert f"machine: {summary['machine']['cpus']} x {summary['machine']['cpu']}" in md
    assert "success (reference)" in md and "| 0.25 (0.50) | 0.50 |" in md
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert len({line.count("|") for line in table}) == 1, table
    assert "Partial runs" in md and "amago2/seed0" in md.split("Partial runs")[1]  # 600 < 1,000
    assert json.loads((tmp_path / "out" / "mw.json").read_text())["rows"] == summary["rows"]


def test_without_references_the_plot_shows_the_expert_normalised_score(tmp_path: Path) -> None:
    """`--no-reference` on Meta-World: no single-task score to normalise by, so the bars read
    against the suite's random and scripted-expert returns instead of being empty."""
    cfg = _config("metaworld-scales", 1_000, 0, "amago2", {})
    tasks, k = [t.name for t in cfg.tasks], cfg.episodes_per_trial
    chance = _chance(cfg, tmp_path, trials=16)
    results = {"amago2/seed0": RunResult("amago2/seed0", 1_000, 1_000,
                                         _eval("reach-v3", chance["reach-v3"] * 1.5, 0.0))}
    args = argparse.Namespace(seeds=[0], preset="metaworld-scales", rescale={}, overrides=[],
                              steps=1_000, eval_trials=16)
    summary = report(args, results, tasks, k, chance)
    assert plot(summary, tmp_path / "no_ref.png") == "expert"
    assert (tmp_path / "no_ref.png").stat().st_size > 0
    # a reference below chance (nothing learned alone) leaves no margin to plot either
    results["reference/reach-v3/seed0"] = RunResult(
        "reference/reach-v3/seed0", 1_000, 1_000, _eval("reach-v3", chance["reach-v3"] / 2, 0.0))
    assert plot(report(args, results, tasks, k, chance), tmp_path / "low.png") == "expert"
    results["reference/reach-v3/seed0"] = RunResult(
        "reference/reach-v3/seed0", 1_000, 1_000, _eval("reach-v3", chance["reach-v3"] * 2, 0.0))
    assert plot(report(args, results, tasks, k, chance), tmp_path / "ref.png") == "reference"
    # references alone (`--no-mix`): the references themselves, against random and expert
    del results["amago2/seed0"]
    assert plot(report(args, results, tasks, k, chance), tmp_path / "refs.png") == "references"
    assert (tmp_path / "refs.png").stat().st_size > 0


def test_reference_table_covers_the_scales_set_and_nothing_else() -> None:
    for task in ("reach-v3", "button-press-v3", "coffee-button-v3", "window-open-v3"):
        ref = reference_returns(task)
        assert ref is not None and ref["expert"] > ref["random"] >= 0
    assert reference_returns("bandit") is None


def _bandit(label: str, ret: float) -> RunResult:
    return RunResult(label, 1_000, 1_000, {"eval/bandit/return": ret})


def test_each_agent_is_normalised_by_its_own_references_and_the_bar_is_counted(
    tmp_path: Path,
) -> None:
    results = {
        "amago2/seed0": _bandit("amago2/seed0", 3.0),
        "amago2/seed1": _bandit("amago2/seed1", 4.0),
        "baseline/seed0": _bandit("baseline/seed0", 2.5),
        "baseline/seed1": _bandit("baseline/seed1", 2.5),
        "reference/bandit/seed0": _bandit("reference/bandit/seed0", 4.0),
        "reference/bandit/seed1": _bandit("reference/bandit/seed1", 4.0),
        "reference-baseline/bandit/seed0": _bandit("reference-baseline/bandit/seed0", 3.0),
        "reference-baseline/bandit/seed1": _bandit("reference-baseline/bandit/seed1", 2.0),
    }
    chance = {"bandit": 2.0}

    def rows(reference_agents: list[str], rescale: dict) -> dict:
        args = argparse.Namespace(seeds=[0, 1], preset="scales", rescale=rescale, overrides=[],
                                  steps=1_000, eval_trials=256,
                                  reference_agents=reference_agents)
        return report(args, results, ["bandit"], 8, chance)

    own = {r["agent"]: r for r in rows(["amago2", "baseline"], {})["rows"]}
    assert own["amago2"]["reference_agent"] == "amago2"
    assert own["amago2"]["normalised_above_chance_per_seed"] == [0.5, 1.0]
    assert own["amago2"]["seeds_at_80_percent"] == 1
    # the ratio of seed means (3.5 - 2) / (4 - 2), and its bootstrap interval over the seeds
    assert own["amago2"]["above_chance_of_means"] == pytest.approx(0.75)
    assert own["amago2"]["above_chance_of_means_90"] == pytest.approx([0.5, 1.0])
    # the baseline's seed-1 reference is at chance: no above-chance score for that seed
    assert own["baseline"]["reference_agent"] == "baseline"
    assert own["baseline"]["normalised_above_chance_per_seed"] == [0.5]
    # without baseline references the baseline is read against amago2's
    fallback = {r["agent"]: r for r in rows(["amago2"], {})["rows"]}
    assert fallback["baseline"]["reference_agent"] == "amago2"
    assert fallback["baseline"]["normalised_above_chance_per_seed"] == [0.25, 0.25]

    # a rescaled study shows the unrescaled study's scores beside its own
    summary = rows(["amago2", "baseline"], {})
    write(summary, tmp_path, "scales")
    rescaled = with_unrescaled(rows(["amago2"], {"bandit": 100.0}), tmp_path, "scales")
    by_agent = {r["agent"]: r for r in rescaled["rows"]}
    assert by_agent["amago2"]["unrescaled_above_chance"] == pytest.approx(0.75)
    write(rescaled, tmp_path, "scales_banditx100")
    md = (tmp_path / "scales_banditx100.md").read_text()
    assert "| unrescaled |" in md and "`scales`, seeds [0, 1]" in md
    assert "| 0.75 [0.50-1.00] |" in md
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert len({line.count("|") for line in table}) == 1, table  # header, rule, rows agree
    amago_line = next(line for line in md.splitlines() if line.startswith("| amago2 | bandit"))
    # reference return, normalised, above chance, at 80 %, seed means, unrescaled
    expected = ("| amago2 | 4.000 (4 / 4) | 0.88 | 0.75 (0.50 / 1.00) | 1 of 2 "
                "| 0.75 [0.50-1.00] | 0.75 |")
    assert expected in amago_line
    # an unrescaled study has no such column, and a missing unrescaled report adds nothing
    assert "unrescaled" not in (tmp_path / "scales.md").read_text()
    assert with_unrescaled(rows(["amago2"], {"bandit": 100.0}), tmp_path / "none", "scales")[
        "rows"][0].get("unrescaled_above_chance") is None
    # the unrescaled baseline was read against its own reference, this one against amago2's
    assert by_agent["baseline"]["unrescaled_above_chance"] is None


def test_seed_means_are_undefined_when_the_references_are_at_chance_on_average() -> None:
    assert above_chance_of_means([3.0, 4.0], [2.0, 1.0], 2.0)["above_chance_of_means"] is None
    assert above_chance_of_means([3.0], [], 2.0)["above_chance_of_means_90"] is None
    one = above_chance_of_means([3.0], [4.0], 2.0)
    assert one["above_chance_of_means"] == pytest.approx(0.5)
    assert one["above_chance_of_means_90"] == pytest.approx([0.5, 0.5])


def test_a_study_goes_on_from_its_committed_report_on_a_machine_without_its_runs(
    tmp_path: Path,
) -> None:
    """Run directories are not in git: the finished runs the committed report records (same
    budget, evaluation and settings) are scored from it instead of being trained again, keep the
    machine they ran on, and carry again into the next report. A run trained with other settings
    (here another initial critic), or recorded without its config, is not taken."""
    from polyskill.benchmarks.barrier import main

    out, root = tmp_path / "results", tmp_path / "runs"
    ev = {"eval/bandit/return": 3.5, "eval/darkroom_x1000/return": 5_000.0}
    amago_cfg = _config("scales", 1_000, 0, "amago2", {}).to_dict()
    other_start = _config("scales", 1_000, 0, "baseline", {}).to_dict()
    other_start["network"]["critic_start"] = "uniform"
    reference_cfg = _config("scales", 1_000, 0, "amago2", {}, only_task="bandit").to_dict()
    earlier = {
        "steps": 1_000, "eval_trials": 8, "machine": "an older machine", "td_target": "scalar",
        "runs": {
            "amago2/seed0": {"env_steps": 1_024, "budget": 1_000, "done": True, "eval": ev,
                             "config": amago_cfg},
            "baseline/seed0": {"env_steps": 1_024, "budget": 1_000, "done": True, "eval": ev,
                               "config": other_start},
            "reference/bandit/seed0": {"env_steps": 1_024, "budget": 1_000, "done": True,
                                       "eval": {"eval/bandit/return": 4.0},
                                       "machine": "2 x Some CPU", "config": reference_cfg},
            "reference/darkroom_x1000/seed0": {"env_steps": 1_024, "budget": 1_000, "done": True,
                                               "eval": ev},  # no config recorded
            "amago2/seed1": {"env_steps": 512, "budget": 1_000, "done": False, "eval": ev,
                             "config": amago_cfg},
        },
        "rows": [{"task": "bandit", "chance": 2.5}, {"task": "darkroom_x1000", "chance": None}],
    }  # fmt: skip
    out.mkdir()
    (out / "scales.json").write_text(json.dumps(earlier))

    # amago2 only and no reference training: whatever is not carried would have to be trained
    argv = ["--preset", "scales", "--steps", "1000", "--seeds", "0", "--eval-trials", "8",
            "--agents", "amago2", "--reference-tasks", "bandit", "--root", str(root),
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert not root.exists() or not any(root.rglob("config.json")), "a recorded run was retrained"
    summary = json.loads((out / "scales.json").read_text())
    assert summary["carried"] == ["amago2/seed0", "reference/bandit/seed0"]
    # the others stay in the record, out of the table
    assert summary["kept"] == ["amago2/seed1", "baseline/seed0", "reference/darkroom_x1000/seed0"]
    assert set(summary["runs"]) == set(earlier["runs"])
    assert summary["runs"]["baseline/seed0"]["config"] == other_start
    assert summary["runs"]["amago2/seed0"]["machine"] == "an older machine"
    assert summary["runs"]["reference/bandit/seed0"]["machine"] == "2 x Some CPU"
    assert summary["runs"]["amago2/seed0"]["config"] == amago_cfg
    assert summary["td_target"] == "scalar"
    rows = {(r["agent"], r["task"]): r for r in summary["rows"]}
    amago = rows[("amago2", "bandit")]
    assert amago["return"] == 3.5 and amago["chance"] == 2.5  # chance measured where they ran
    assert amago["normalised_above_chance"] == pytest.approx((3.5 - 2.5) / (4.0 - 2.5))
    md = (out / "scales.md").read_text()
    assert "Runs scored from the earlier report" in md and "amago2/seed0 (an older machine)" in md
    assert "not in this table" in md and "Partial runs" not in md  # seed 1 was not asked for

    # the new report carries them again; another budget or evaluation does not
    again = recorded_runs(recorded_report(out / "scales.json", 1_000, 8))
    assert set(again) == set(earlier["runs"]) and not again["amago2/seed1"].done
    assert recorded_report(out / "scales.json", 2_000, 8) == {}
    assert recorded_report(out / "scales.json", 1_000, 16) == {}
