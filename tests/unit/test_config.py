"""Config errors are caught before training, with messages that say which setting and why."""

import math

import pytest

from polyskill.trainer.config import ConfigError, TrainConfig, apply_overrides, settable_keys
from polyskill.trainer.presets import PRESETS, get_preset


def test_overrides_reach_nested_configs_and_round_trip() -> None:
    cfg = apply_overrides(
        get_preset("smoke"),
        [
            "network.d_model=32",
            "network.num_heads=2",
            "optim.lr=3e-4",
            "network.gammas=0.9,0.99",
            "collector=process",
            "network.agent=baseline",
        ],
    )
    assert (cfg.network.d_model, cfg.optim.lr, cfg.network.gammas) == (32, 3e-4, (0.9, 0.99))
    assert cfg.collector == "process" and cfg.network.agent == "baseline"
    assert apply_overrides(get_preset("smoke"), ["agent=baseline"]).network.agent == "baseline"
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("network.dmodel=3", "unknown setting 'network.dmodel'"),
        ("num_envs=zero", "cannot read as"),
        ("num_envs=0", "num_envs must be >= 1"),
        ("network.d_model=30", "divisible by num_heads"),
        ("collector=threads", "choose one of"),
        ("network.agent=dqn", "choose one of"),
        ("tasks=x", "tasks are chosen with --preset or --env"),
        ("lr", "expects key=value"),
        ("optim.tau=0", "optim: need lr > 0 and 0 < tau <= 1"),
        ("replay_weighting=recent", "choose one of"),
        ("optim.lr_final_fraction=2", r"lr_final_fraction must be in \[0, 1\]"),
        ("loss.n_step=0", "loss: n_step must be >= 1"),
        ("network.critic_decode=median", "choose one of"),
    ],
)
def test_bad_overrides_fail_with_a_clear_message(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        apply_overrides(get_preset("smoke"), [override])


def test_every_preset_is_valid_and_every_key_is_listed_with_its_doc() -> None:
    for name in PRESETS:
        get_preset(name).validate()
    keys = settable_keys()
    assert "network.context_length" in keys and "optim.lr" in keys
    assert "Tokens the policy attends over" in keys["network.context_length"]
    with pytest.raises(ConfigError, match="unknown preset"):
        get_preset("nope")


@pytest.mark.parametrize("name", ["metaworld-ml10", "metaworld-ml45", "metaworld-scales"])
def test_metaworld_presets_fit_amago2_s_bins_to_the_suite_s_returns(name: str) -> None:
    """Meta-World's trials end by time limit, so nothing anchors the critic: its bins must cover
    every discounted return the suite can pay (0-10 per step, times the TD target's multiplier)
    and keep the spacing that learned `point` and Meta-World, about 0.44 per bin in symlog space
    (docs/results/barrier.md); the wide +-1e5 at 0.74 learned neither."""
    cfg = get_preset(name)
    net = cfg.network
    trial = cfg.episodes_per_trial * 500  # Meta-World episodes are 500 steps
    high = 10.0 * cfg.loss.reward_multiplier * sum(max(net.gammas) ** t for t in range(trial))
    assert net.bin_low <= 0.0 and net.bin_high >= high, (net.bin_low, net.bin_high, high)

    def symlog(x: float) -> float:
        return math.copysign(math.log1p(abs(x)), x)

    spacing = (symlog(net.bin_high) - symlog(net.bin_low)) / (net.num_bins - 1)
    assert 0.4 <= spacing <= 0.5, spacing


@pytest.mark.parametrize("name", ["smoke", "scales", "cartpole"])
def test_built_in_presets_build_their_network(name: str) -> None:
    """The tasks of a preset share one action space and compatible observations (the suites'
    presets need optional packages: tests/integration/test_suites.py builds those)."""
    from polyskill.trainer.loop import build_network

    cfg = get_preset(name)
    net = build_network(cfg)
    assert net.action_spec.kind == "discrete" and net.cfg == cfg.network


def test_a_run_stored_before_newer_settings_existed_resumes(tmp_path) -> None:
    """A run dir written by an older version lacks settings added since: they read as their
    defaults (the old behaviour), the run resumes and its stored config gains them; a setting that
    really differs still stops the resume."""
    import json

    from polyskill.trainer.loop import RunDir

    old = get_preset("scales").to_dict()
    del old["replay_weighting"], old["loss"]["n_step"], old["optim"]["lr_decay_updates"]
    del old["loss"]["td_target"], old["network"]["critic_decode"], old["network"]["critic_start"]
    (tmp_path / "config.json").write_text(json.dumps(old))
    # td_target's and critic_decode's old behaviours are not their defaults: such a run resumes
    # with the old ones only, and the error names both
    with pytest.raises(ConfigError, match=r"loss.td_target=scalar \(now distributional\)") as e:
        RunDir(tmp_path).prepare_config(get_preset("scales"))
    assert "network.critic_decode=symlog (now trimmed)" in str(e.value)
    scalar = apply_overrides(
        get_preset("scales"), ["loss.td_target=scalar", "network.critic_decode=symlog"]
    )
    RunDir(tmp_path).prepare_config(scalar)
    stored = json.loads((tmp_path / "config.json").read_text())
    assert stored["replay_weighting"] == "trajectory" and stored["loss"]["n_step"] == 1
    assert stored["loss"]["td_target"] == "scalar"
    assert stored["network"]["critic_start"] == "uniform"  # how it started; resuming may differ
    with pytest.raises(ConfigError, match="differs in: loss.n_step=1 \\(now 3\\)"):
        RunDir(tmp_path).prepare_config(apply_overrides(scalar, ["loss.n_step=3"]))


def test_a_setting_that_only_shapes_the_initial_weights_may_change_on_resume(tmp_path) -> None:
    """network.critic_start picks the initial weights; a resumed run loads its own, so a resume
    with another value goes ahead and the stored config keeps how the run started."""
    import json

    from polyskill.trainer.loop import RunDir

    def stored_start() -> str:
        return json.loads((tmp_path / "config.json").read_text())["network"]["critic_start"]

    RunDir(tmp_path).prepare_config(get_preset("scales"))
    assert stored_start() == "zero"
    RunDir(tmp_path).prepare_config(apply_overrides(get_preset("scales"),
                                                    ["network.critic_start=uniform"]))
    assert stored_start() == "zero"
    with pytest.raises(ConfigError, match="network.critic_decode=trimmed \\(now mean\\)"):
        RunDir(tmp_path).prepare_config(apply_overrides(get_preset("scales"),
                                                        ["network.critic_decode=mean"]))
