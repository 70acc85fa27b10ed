"""`polyskill drive` against a real server on loopback: the JSON summary on a built-in task, the
human report, and a readable error when the env does not fit the model.

    .venv/bin/python -m pytest -q tests/integration/test_drive.py
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import gymnasium as gym
import pytest
from server_helpers import SMALL

import polyskill.trainer.envs  # noqa: F401 - registers polyskill/* for the checkpoint's spaces
from polyskill.server.config import ServerConfig
from polyskill.server.testing import ServerThread, make_checkpoint
from polyskill_client import drive

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def bandit_server(tmp_path_factory: pytest.TempPathFactory):
    env = gym.make("polyskill/Bandit-v0")
    ckpt = make_checkpoint(str(tmp_path_factory.mktemp("ckpt") / "bandit"),
                           env.observation_space, env.action_space, **SMALL)
    with ServerThread(ServerConfig(checkpoint=ckpt, port=0)) as srv:
        yield srv


def drive_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    drive.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_cli_json_summary_on_a_builtin_task(bandit_server) -> None:
    """Through the `polyskill` CLI in a fresh process: polyskill/* envs register themselves."""
    out = subprocess.run(
        [sys.executable, "-m", "polyskill.cli", "drive", "--server", bandit_server.address,
         "--env", "polyskill/Bandit-v0", "--sessions", "3", "--episodes", "4", "--trials", "2",
         "--seed", "7", "--json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["env"] == "polyskill/Bandit-v0" and summary["model"]["version"] == 1
    assert summary["sessions"] == 3 and summary["episodes_per_trial"] == 4
    assert summary["trials"] == 6 and summary["steps"] == 3 * 2 * 4  # one pull per episode
    assert len(summary["episode_returns"]) == 4 and len(summary["episode_success"]) == 4
    assert all(0.0 <= r <= 1.0 for r in summary["episode_returns"])
    gain = summary["return_last"] - summary["return_first"]
    assert summary["in_context_gain"] == pytest.approx(gain)
    assert 0 < summary["latency_ms"]["p50"] <= summary["latency_ms"]["p99"]
    assert summary["errors"] == [] and summary["streaming"] is True


def test_human_report_unary(bandit_server, capsys: pytest.CaptureFixture) -> None:
    args = drive_args("--server", bandit_server.address, "--env", "polyskill/Bandit-v0",
                      "--episodes", "3", "--unary", "--deterministic")
    assert drive.run(args) == 0
    text = capsys.readouterr().out
    assert "in-context gain (episode 3 - episode 1)" in text and "p99" in text
    assert "success" in text


def test_cpu_latency_request_is_held_while_driving_and_refusals_stop_it_early(
        bandit_server, tmp_path, monkeypatch, capsys) -> None:
    from polyskill_client import cpu_latency

    device = tmp_path / "cpu_dma_latency"  # a plain file stands in for the PM QoS device
    device.touch()
    opened = []
    request_class = cpu_latency.CpuLatencyRequest

    def recording(max_us: int) -> cpu_latency.CpuLatencyRequest:
        opened.append(request_class(max_us, device=str(device)))
        return opened[-1]

    monkeypatch.setattr(cpu_latency, "CpuLatencyRequest", recording)
    args = drive_args("--server", bandit_server.address, "--env", "polyskill/Bandit-v0",
                      "--episodes", "2", "--cpu-latency-us", "0", "--json")
    assert drive.run(args) == 0 and json.loads(capsys.readouterr().out)["steps"] == 2
    assert device.read_bytes() == bytes(4) and opened[0]._fd is None  # held, then given back
    monkeypatch.setattr(cpu_latency, "CpuLatencyRequest", request_class)
    monkeypatch.setattr(cpu_latency, "DEVICE", str(tmp_path / "no" / "cpu_dma_latency"))
    assert drive.run(args) == 2
    assert "cannot request a CPU wake-up latency of 0 us" in capsys.readouterr().err
    assert drive.run(drive_args("--env", "CartPole-v1", "--cpu-latency-us", "-3")) == 2
    assert "--cpu-latency-us must be >= 0 (or -1 for off), got -3" in capsys.readouterr().err


def test_env_that_does_not_fit_is_a_readable_error(bandit_server, capsys) -> None:
    args = drive_args("--server", bandit_server.address, "--env", "CartPole-v1", "--json")
    assert drive.run(args) == 1
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["steps"] == 0 and "SpecMismatch" in summary["errors"][0]
    assert "env gives vector shape [4]" in captured.err and "Discrete(2" in captured.err


@pytest.mark.parametrize("env_id", ["polyskill/Bandit-v0", "polyskill/DarkRoom-v0"])
def test_batch_mode_plays_the_same_trials_as_one_thread_per_session(env_id: str, tmp_path
                                                                    ) -> None:
    """--batch steps every env in one ActBatch call per tick; with the same seeds (sampled
    actions are seeded per session, whatever the batching) it must play exactly the trials the
    threaded mode plays - dark-room episodes of different lengths included (instances finish at
    different ticks)."""
    env = gym.make(env_id)
    ckpt = make_checkpoint(str(tmp_path / "m"), env.observation_space, env.action_space, **SMALL)
    with ServerThread(ServerConfig(checkpoint=ckpt, port=0)) as srv:
        argv = ["--server", srv.address, "--env", env_id, "--sessions", "3", "--episodes", "3",
                "--trials", "2", "--seed", "5"]
        threaded = drive.drive(drive_args(*argv))
        batched = drive.drive(drive_args(*argv, "--batch"))
    assert threaded["errors"] == [] and batched["errors"] == []
    assert batched["batch"] is True and batched["trials"] == threaded["trials"] == 6
    assert batched["steps"] == threaded["steps"] > 0
    assert len(set(threaded["episode_returns"])) > 1  # not all equal: a test that can fail
    assert batched["episode_returns"] == pytest.approx(threaded["episode_returns"])
