"""`polyskill bench curve` reads a chunked barrier study (one report per budget, the runs resumed
in between) and lays each run out budget by budget; bad inputs are refused with what to pass."""

import json
from pathlib import Path

import pytest

from polyskill.benchmarks.barrier import main as barrier
from polyskill.benchmarks.curve import main as curve


def test_curve_of_a_study_grown_in_two_chunks(tmp_path: Path) -> None:
    def chunk(steps: int) -> Path:
        out = tmp_path / f"out_{steps}"
        assert barrier(["--preset", "smoke", "--steps", str(steps), "--seeds", "0",
                        "--no-reference", "--eval-trials", "16", "--root", str(tmp_path / "runs"),
                        "--out", str(out)]) == 0
        return out

    first, second = chunk(300), chunk(600)
    assert curve([str(second), str(first), "--out", str(tmp_path / "c" / "smoke.v1")]) == 0

    data = json.loads((tmp_path / "c" / "smoke.v1.json").read_text())
    assert data["preset"] == "smoke"
    by_run = {c["run"]: c for c in data["curves"]}
    assert set(by_run) == {"amago2/seed0", "baseline/seed0"}
    for c in by_run.values():
        assert c["task"] == "bandit"
        steps = [p["env_steps"] for p in c["points"]]
        assert [p["budget"] for p in c["points"]] == [300, 600]  # sorted, whichever order given
        assert steps[0] >= 300 and steps[1] >= 600 > steps[0]  # the second chunk resumed it
    # the scores are the reports' own, point by point
    report = json.loads(next(second.glob("*.json")).read_text())
    ret = report["runs"]["amago2/seed0"]["eval"]["eval/bandit/return"]
    assert by_run["amago2/seed0"]["points"][1]["ret"] == ret
    assert data["tasks"]["bandit"]["chance"] == report["rows"][0]["chance"]

    table = (tmp_path / "c" / "smoke.v1.md").read_text()
    assert "| run | task | chance | expert | 300 | 600 |" in table
    assert table.count("| amago2/seed0 | bandit |") == 1
    assert (tmp_path / "c" / "smoke.v1.png").stat().st_size > 0


def test_curve_refuses_what_is_not_one_preset_s_reports(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit):
        curve([str(empty), "--out", str(tmp_path / "c")])
    assert "no report (*.json) in this folder" in capsys.readouterr().err

    (tmp_path / "notes.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(SystemExit):
        curve([str(tmp_path / "notes.json"), "--out", str(tmp_path / "c")])
    assert "not a `bench barrier` report" in capsys.readouterr().err

    for name, preset in (("a.json", "smoke"), ("b.json", "scales")):
        (tmp_path / name).write_text(json.dumps(
            {"preset": preset, "steps": 100, "runs": {}, "rows": []}))
    with pytest.raises(SystemExit):
        curve([str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--out", str(tmp_path / "c")])
    assert "reports of several presets ['scales', 'smoke']" in capsys.readouterr().err

    with pytest.raises(SystemExit):
        curve([str(tmp_path / "a.json"), "--out", str(tmp_path / "c")])
    assert "no scored runs" in capsys.readouterr().err
    assert not (tmp_path / "c.md").exists()
