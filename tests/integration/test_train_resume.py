"""`polyskill train` as a user runs it: killed with SIGKILL, or stopped with SIGTERM, it resumes
from its run directory with its checkpoint and replay buffer."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

CMD = [sys.executable, "-m", "polyskill.cli", "train", "--preset", "smoke", "--no-mlflow",
       "--set", "checkpoint_every_steps=800", "--set", "eval_every_steps=100000",
       "--set", "eval_trials_per_task=8", "--set", "learning_starts=160"]


def start(run_dir: Path, steps: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([*CMD, *extra, "--run-dir", str(run_dir), "--steps", str(steps)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def latest_counters(run_dir: Path) -> dict | None:
    pointer = run_dir / "checkpoints" / "LATEST"
    if not pointer.exists():
        return None
    return json.loads((run_dir / "checkpoints" / pointer.read_text() / "counters.json").read_text())


def wait_for(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


@pytest.mark.timeout(180)
def test_sigkill_then_resume_continues_from_checkpoint_and_replay(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = start(run_dir, steps=1_000_000)
    wait_for(lambda: (latest_counters(run_dir) or {}).get("env_steps", 0) >= 1600, 120)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = latest_counters(run_dir)
    replay_before = sorted((run_dir / "replay" / "trajectories").glob("*.npz"))
    assert before["updates"] > 0 and replay_before

    target = before["env_steps"] + 1600
    # a logging setting may change on resume; without a terminal progress goes to the log
    proc = start(run_dir, target, "--set", "progress_log_seconds=0.2")
    out, _ = proc.communicate(timeout=150)
    assert proc.returncode == 0, out
    assert "resumed from" in out
    assert f" / {target} env steps (" in out and "min to go at this rate" in out, out
    after = latest_counters(run_dir)
    assert after["env_steps"] >= target
    assert after["updates"] > before["updates"]
    assert after["mlflow_run_id"] == before["mlflow_run_id"]
    replay_after = set((run_dir / "replay" / "trajectories").glob("*.npz"))
    assert set(replay_before) <= replay_after  # nothing written before the kill was lost
    assert len(replay_after) > len(replay_before)


@pytest.mark.timeout(120)
def test_sigterm_checkpoints_and_exits_cleanly(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = start(run_dir, steps=1_000_000)
    wait_for(lambda: latest_counters(run_dir) is not None, 90)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    final = latest_counters(run_dir)
    assert final["env_steps"] > 800  # a checkpoint written at the stop, not only the periodic one
    assert final["env_steps"] % 800 != 0 or "received SIGTERM" in out


def test_config_error_fails_before_training(tmp_path: Path) -> None:
    for args, expect in [
        (["--preset", "nope"], "unknown preset"),
        (["--preset", "smoke", "--set", "network.d_modle=3"], "unknown setting"),
        (["--env", "CartPole-v1", "--env", "polyskill/Bandit-v0"], "action spaces"),
        (["--env", "NoSuchEnv-v9"], "not a registered gymnasium id"),
    ]:
        proc = subprocess.run([sys.executable, "-m", "polyskill.cli", "train", *args,
                               "--run-dir", str(tmp_path / "r"), "--no-mlflow"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, (args, proc.stderr)
        assert expect in proc.stderr, (args, proc.stderr)
        assert not (tmp_path / "r" / "replay").exists()
