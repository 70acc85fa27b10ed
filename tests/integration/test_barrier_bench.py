"""`polyskill bench barrier` runs both agents and the single-task references, resumes, and writes
a report that marks partial runs instead of extrapolating them."""

import json
from pathlib import Path

import pytest

from polyskill.benchmarks.barrier import main


def test_barrier_report_on_a_tiny_budget(tmp_path: Path) -> None:
    args = ["--preset", "smoke", "--steps", "800", "--seeds", "0", "--rescale", "bandit=100",
            "--eval-trials", "64", "--root", str(tmp_path / "runs"), "--out", str(tmp_path / "out"),
            "--reference-agents", "amago2", "baseline"]
    assert main(args) == 0
    summary = json.loads((tmp_path / "out" / "smoke_banditx100.json").read_text())
    assert set(summary["runs"]) == {"amago2/seed0", "baseline/seed0", "reference/bandit/seed0",
                                    "reference-baseline/bandit/seed0"}
    stored = json.loads((tmp_path / "runs" / "smoke_banditx100" / "reference-baseline" / "bandit"
                         / "seed0" / "config.json").read_text())
    assert stored["network"]["agent"] == "baseline"
    assert all(r["done"] and r["env_steps"] >= 800 for r in summary["runs"].values())
    rows = {(r["agent"], r["task"]): r for r in summary["rows"]}
    # same config and seed as its reference, for each agent
    assert rows[("amago2", "bandit")]["normalised"] == 1.0
    assert rows[("baseline", "bandit")]["normalised"] == 1.0
    assert rows[("baseline", "bandit")]["reference_agent"] == "baseline"
    assert summary["td_target"] == "distributional"  # the default; named in the report
    assert "TD targets distributional" in (tmp_path / "out" / "smoke_banditx100.md").read_text()
    # chance: 10 uniformly random pulls at 0.32 expected reward, x100 (64 trials: sd ~18)
    chance = rows[("amago2", "bandit")]["chance"]
    assert 250 < chance < 390, chance
    above = rows[("amago2", "bandit")]["normalised_above_chance"]
    ref = summary["runs"]["reference/bandit/seed0"]["eval"]["eval/bandit/return"]
    assert above == (1.0 if ref > chance else None)
    # scored by one 64-trial evaluation per run, cached beside its checkpoint
    assert list((tmp_path / "runs").rglob("eval_64_eps0.json"))
    # rewards were scaled x100: returns are in the hundreds
    assert rows[("baseline", "bandit")]["return"] > 50
    assert (tmp_path / "out" / "smoke_banditx100.png").stat().st_size > 0
    # a second call resumes every run (nothing retrained) and reports the same numbers
    assert main(args) == 0
    again = json.loads((tmp_path / "out" / "smoke_banditx100.json").read_text())
    assert again["rows"] == summary["rows"]


def test_barrier_set_applies_to_every_run_and_a_bad_one_fails_first(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--preset", "smoke", "--steps", "400", "--seeds", "0", "--no-reference",
              "--root", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit):
        main([*common, "--set", "loss.reward_multiplier=ten"])
    assert "loss.reward_multiplier=ten" in capsys.readouterr().err  # names the bad setting
    with pytest.raises(SystemExit):
        main([*(a for a in common if a != "--no-reference"), "--reference-tasks", "darkroom"])
    # smoke has only the bandit
    assert "--reference-tasks ['darkroom']: not in preset 'smoke'" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # nothing trained

    assert main([*common, "--set", "loss.reward_multiplier=0.1"]) == 0
    summary = json.loads((tmp_path / "out" / "smoke_reward_multiplier-0.1.json").read_text())
    assert summary["settings"] == ["loss.reward_multiplier=0.1"]
    assert summary["eval_trials"] == 256  # default: 8x smoke's 64 periodic trials, capped at 256
    for agent in ("amago2", "baseline"):
        stored = json.loads(next((tmp_path / "runs" / "smoke_reward_multiplier-0.1" / agent)
                                 .rglob("config.json")).read_text())
        assert stored["loss"]["reward_multiplier"] == 0.1
        assert stored["network"]["agent"] == agent


def test_reference_tasks_limit_training_and_other_trained_references_are_still_scored(
        tmp_path: Path) -> None:
    common = ["--preset", "scales", "--steps", "300", "--seeds", "0", "--eval-trials", "4",
              "--root", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]
    runs = tmp_path / "runs" / "scales" / "reference"

    def labels() -> set[str]:
        return set(json.loads((tmp_path / "out" / "scales.json").read_text())["runs"])

    assert main([*common, "--reference-tasks", "darkroom_x1000"]) == 0
    assert not (runs / "bandit").exists()
    assert "reference/darkroom_x1000/seed0" in labels()
    assert "reference/bandit/seed0" not in labels()
    assert main([*common, "--reference-tasks", "bandit"]) == 0
    assert {"reference/bandit/seed0", "reference/darkroom_x1000/seed0"} <= labels()


def test_agents_train_one_agent_per_process_and_the_other_is_scored(tmp_path: Path) -> None:
    common = ["--preset", "smoke", "--steps", "300", "--seeds", "0", "--no-reference",
              "--eval-trials", "4", "--root", str(tmp_path / "runs"),
              "--out", str(tmp_path / "out")]
    runs = tmp_path / "runs" / "smoke"

    def labels() -> set[str]:
        return set(json.loads((tmp_path / "out" / "smoke.json").read_text())["runs"])

    assert main([*common, "--agents", "baseline"]) == 0
    assert not (runs / "amago2").exists()
    assert labels() == {"baseline/seed0"}
    baseline_files = {p: p.stat().st_mtime_ns for p in (runs / "baseline").rglob("*.pt")}
    assert baseline_files
    assert main([*common, "--agents", "amago2"]) == 0
    assert labels() == {"amago2/seed0", "baseline/seed0"}
    # the baseline was scored from its stored checkpoint, not trained again
    assert {p: p.stat().st_mtime_ns for p in (runs / "baseline").rglob("*.pt")} == baseline_files
