"""`bench serve --parts wakeup`: the interleaved A/B of the CPU latency request runs against real
servers and reports both settings; where the request is refused it says so and measures nothing.
(What the request does to latency is the benchmark's to measure, not a test's.)"""

from __future__ import annotations

import gymnasium as gym
import pytest
from server_helpers import SMALL

from polyskill.benchmarks.serve import main as bench_main
from polyskill.benchmarks.serve_wakeup import wakeup_ab
from polyskill.server.testing import make_checkpoint
from polyskill_client import cpu_latency

pytestmark = pytest.mark.timeout(120)


def test_both_settings_are_measured_in_every_round(tmp_path, monkeypatch) -> None:
    device = tmp_path / "cpu_dma_latency"  # a plain file stands in for the PM QoS device
    device.touch()
    monkeypatch.setattr(cpu_latency, "DEVICE", str(device))
    env = gym.make("CartPole-v1")
    ckpt = make_checkpoint(str(tmp_path / "ckpt"), env.observation_space, env.action_space,
                           **SMALL)
    result = wakeup_ab(ckpt, ["torch"], rounds=2, steps=40)
    assert device.read_bytes() == bytes(4)  # the "poll" halves took the request (0 us)
    for setting in ("off", "poll"):
        r = result["torch"][setting]
        assert 0 < r["echo_ms"] < r["served_ms"] and r["bare_ms"] > 0
        assert len(r["rounds"]["latency_ratio_p50"]) == 2
        assert r["b1_vs_bare_step"] == pytest.approx(sum(r["rounds"]["b1_vs_bare_step"]) / 2)


def test_a_refused_request_skips_the_part_and_a_held_one_is_an_error(tmp_path, monkeypatch,
                                                                      capsys) -> None:
    monkeypatch.setattr(cpu_latency, "DEVICE", str(tmp_path / "no" / "cpu_dma_latency"))
    result = wakeup_ab(str(tmp_path / "never-read"), ["torch"], rounds=2, steps=40)
    assert "cannot request a CPU wake-up latency" in result["skipped"]
    assert bench_main(["--parts", "wakeup", "--cpu-latency-us", "0"]) == 2
    assert "--parts wakeup compares runs with and without" in capsys.readouterr().err
