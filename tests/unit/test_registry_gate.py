"""The champion gate and the metric <-> tag mapping, with exact numbers."""

import pytest

from polyskill.trainer.registry import GateConfig, gate, metric_tags, metrics_from_tags

CHAMP = {"eval/mean_return": 10.0, "eval/a/return": 16.0, "eval/b/return": 4.0}


def test_no_champion_passes() -> None:
    assert gate({}, None).passed


def test_candidate_without_metrics_fails_against_a_champion() -> None:
    d = gate({}, CHAMP)
    assert not d.passed and "no eval metrics" in d.reasons[0]


def test_mean_margin_is_a_fraction_of_the_champion_mean() -> None:
    cfg = GateConfig(mean_margin=0.05, task_regression=1.0)
    ok = {"eval/mean_return": 9.5, "eval/a/return": 15.0, "eval/b/return": 4.0}  # exactly -5 %
    assert gate(ok, CHAMP, cfg).passed
    worse = {**ok, "eval/mean_return": 9.49}
    d = gate(worse, CHAMP, cfg)
    assert not d.passed and d.reasons == ["mean return 9.49 < champion 10 by more than 5%"]


def test_a_task_regressing_fails_even_if_the_mean_improves() -> None:
    cfg = GateConfig(mean_margin=0.0, task_regression=0.25)
    cand = {"eval/mean_return": 11.0, "eval/a/return": 19.0, "eval/b/return": 3.0}  # b: -25 %
    assert gate(cand, CHAMP, cfg).passed
    cand["eval/b/return"] = 2.99
    d = gate(cand, CHAMP, cfg)
    assert not d.passed and d.reasons == ["task b return 2.99 < champion 4 by more than 25%"]


def test_negative_returns_use_the_magnitude() -> None:
    champ = {"eval/mean_return": -100.0, "eval/a/return": -100.0}
    assert gate({"eval/mean_return": -105.0, "eval/a/return": -105.0}, champ).passed
    assert not gate({"eval/mean_return": -106.0, "eval/a/return": -106.0}, champ).passed


def test_new_tasks_are_not_compared() -> None:
    cand = {"eval/mean_return": 10.0, "eval/a/return": 16.0, "eval/b/return": 4.0,
            "eval/c/return": -50.0}
    assert gate(cand, CHAMP).passed


def test_bad_config_is_rejected() -> None:
    with pytest.raises(ValueError, match="margins must be >= 0"):
        GateConfig(mean_margin=-0.1)


def test_metric_tags_round_trip() -> None:
    m = {"eval/mean_return": 4.75, "eval/bandit/return": 4.75, "eval/bandit/return_ep1": 0.3,
         "eval/bandit/success": 1.0, "train/loss": 3.0}
    tags = metric_tags(m)
    assert tags == {"eval.mean_return": "4.75", "eval.bandit.return": "4.75",
                    "eval.bandit.return_ep1": "0.3", "eval.bandit.success": "1.0"}
    assert metrics_from_tags({**tags, "git_revision": "abc"}) == {
        k: v for k, v in m.items() if k.startswith("eval/")}
