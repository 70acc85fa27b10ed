"""ReplayBuffer: atomic files, resume, FIFO with protected demos, exact window sampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from polyskill.trainer.replay import ReplayBuffer, load_trajectory


def make_traj(t: int, ident: int = 0, continuous: bool = False) -> dict[str, np.ndarray]:
    """obs/pos[s] = (ident, s); actions 10 + s; rewards s + 0.5; episodes start at 0 and 2."""
    steps = np.arange(t + 1)
    new_episode = np.zeros(t + 1, bool)
    new_episode[[0, min(2, t)]] = True
    terminated = np.zeros(t, bool)
    terminated[-1] = True
    actions = (10 + np.arange(t)).astype(np.int64)
    if continuous:
        actions = np.stack([actions, -actions], axis=1).astype(np.float32)  # (T, 2)
    return {
        "obs/pos": np.stack([np.full(t + 1, ident), steps], axis=1).astype(np.int32),  # (T+1, 2)
        "obs/flag": (steps % 2).astype(np.float32),  # (T+1,)
        "actions": actions,
        "rewards": np.arange(t, dtype=np.float32) + 0.5,
        "new_episode": new_episode,
        "terminated": terminated,
    }


def test_roundtrip_and_resume(tmp_path: Path) -> None:
    buf = ReplayBuffer(tmp_path, max_trajectories=10, seed=0)
    paths = [buf.add(make_traj(4, i), task=f"task{i}") for i in range(3)]
    traj, task = load_trajectory(paths[1])
    assert task == "task1" and traj["obs/pos"].dtype == np.int32
    np.testing.assert_array_equal(traj["obs/pos"][:, 0], 1)
    assert traj["rewards"].dtype == np.float32 and traj["new_episode"].dtype == bool
    again = ReplayBuffer(tmp_path, max_trajectories=10, seed=0)
    assert len(again) == 3 and again.num_steps == 12
    assert again.paths() == paths
    new = again.add(make_traj(2), task="x")
    assert new.name == "traj_000000000003.npz"  # the counter continues
    assert again.get(paths[2])[1] == "task2"


def test_fifo_keeps_newest_and_never_evicts_demos(tmp_path: Path) -> None:
    buf = ReplayBuffer(tmp_path, max_trajectories=3, seed=0, cache_size=2)
    demo = buf.add(make_traj(3, 99), task="demo", demo=True)
    paths = [buf.add(make_traj(3, i), task="t") for i in range(6)]
    assert buf.paths() == [*paths[3:], demo]
    assert len(buf) == 4 and buf.num_demos == 1 and buf.num_steps == 12
    assert sorted(p.name for p in (tmp_path / "trajectories").iterdir()) == [
        p.name for p in paths[3:]
    ]
    assert demo.exists()
    # After a restart with a smaller cap, eviction still spares the demo.
    small = ReplayBuffer(tmp_path, max_trajectories=1, seed=0)
    assert small.paths() == [paths[5], demo]
    assert small.stats()["replay/demos"] == 1.0


def test_leftover_temp_file_is_ignored_and_deleted(tmp_path: Path) -> None:
    buf = ReplayBuffer(tmp_path, max_trajectories=5, seed=0)
    buf.add(make_traj(3), task="t")
    tmp = tmp_path / "trajectories" / "traj_000000000099.npz.tmp"
    tmp.write_bytes(b"half a file")  # what a SIGKILL during a write leaves behind
    again = ReplayBuffer(tmp_path, max_trajectories=5, seed=0)
    assert len(again) == 1 and not tmp.exists()
    assert again.add(make_traj(3), task="t").name == "traj_000000000001.npz"
    again.sample(4, 3)


def test_reader_never_deletes_the_writers_files_in_progress(tmp_path: Path) -> None:
    """The learner reads a buffer the collector process writes: when a sampled file has been
    evicted under it, its rescan must keep the collector's temp file (the next trial)."""
    writer = ReplayBuffer(tmp_path, max_trajectories=2, seed=0)
    writer.add(make_traj(3), task="t")
    reader = ReplayBuffer(tmp_path, max_trajectories=2, seed=0, writer_elsewhere=True)
    for _ in range(3):
        writer.add(make_traj(4), task="t")  # evicts the file the reader knows
    in_progress = tmp_path / "trajectories" / "traj_000000000004.npz.tmp"
    in_progress.write_bytes(b"being written")
    b = reader.sample(8, 3)  # hits the evicted file, rescans
    assert in_progress.exists()
    assert len(reader) == 2 and b.token_mask.shape == (8, 3)


def test_invalid_trajectory_is_rejected(tmp_path: Path) -> None:
    buf = ReplayBuffer(tmp_path, max_trajectories=5, seed=0)
    bad = make_traj(3)
    bad["new_episode"] = bad["new_episode"][:-1]
    with pytest.raises(ValueError, match="new_episode"):
        buf.add(bad, task="t")
    with pytest.raises(ValueError, match="empty"):
        buf.sample(1, 4)


def test_sample_padded_window_exact(tmp_path: Path) -> None:
    buf = ReplayBuffer(tmp_path, max_trajectories=5, seed=0)
    buf.add(make_traj(4, ident=7), task="t")  # T = 4, 5 tokens
    b = buf.sample(batch_size=2, length=7)  # longer than the trajectory: start 0, pad 2
    assert b.obs["pos"].shape == (2, 7, 2) and b.obs["pos"].dtype == np.int32
    assert b.obs["flag"].shape == (2, 7)
    assert b.tasks == ["t", "t"]
    row = 0
    np.testing.assert_array_equal(b.obs["pos"][row, :, 1], [0, 1, 2, 3, 4, 0, 0])
    np.testing.assert_array_equal(b.obs["pos"][row, :5, 0], 7)
    np.testing.assert_array_equal(b.positions[row], [0, 1, 2, 3, 4, 0, 0])
    np.testing.assert_array_equal(b.token_mask[row], [1, 1, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(b.action_mask[row], [1, 1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(b.actions[row], [10, 11, 12, 13, 0, 0, 0])
    np.testing.assert_array_equal(b.prev_actions[row], [0, 10, 11, 12, 13, 0, 0])
    np.testing.assert_array_equal(b.rewards[row], [0.5, 1.5, 2.5, 3.5, 0, 0, 0])
    np.testing.assert_array_equal(b.prev_rewards[row], [0, 0.5, 1.5, 2.5, 3.5, 0, 0])
    np.testing.assert_array_equal(b.new_episode[row], [1, 0, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(b.terminated[row], [0, 0, 0, 1, 0, 0, 0])
    assert b.actions.dtype == np.int64 and b.rewards.dtype == np.float32
    assert b.positions.dtype == np.int64 and b.token_mask.dtype == bool


def test_sample_inner_windows_exact(tmp_path: Path) -> None:
    buf = ReplayBuffer(tmp_path, max_trajectories=5, seed=1)
    t = 6
    buf.add(make_traj(t, continuous=True), task="t")
    length = 3
    b = buf.sample(batch_size=64, length=length)
    assert b.actions.shape == (64, 3, 2) and b.prev_actions.dtype == np.float32
    starts = b.positions[:, 0]
    assert set(starts.tolist()) == set(range(t + 2 - length))  # uniform over [0, T+1-L]
    assert b.token_mask.all()
    for i, s in enumerate(starts):
        steps = np.arange(s, s + length)
        np.testing.assert_array_equal(b.positions[i], steps)
        has_action = steps < t
        np.testing.assert_array_equal(b.action_mask[i], [True, True, False])
        np.testing.assert_array_equal(b.actions[i, :, 0], np.where(has_action, 10 + steps, 0))
        np.testing.assert_array_equal(b.actions[i, :, 1], np.where(has_action, -10 - steps, 0))
        np.testing.assert_array_equal(
            b.prev_actions[i, :, 0], np.where(steps > 0, 10 + steps - 1, 0)
        )
        np.testing.assert_array_equal(b.prev_rewards[i], np.where(steps > 0, steps - 0.5, 0))
        np.testing.assert_array_equal(b.rewards[i], np.where(has_action, steps + 0.5, 0))
        np.testing.assert_array_equal(b.terminated[i], steps == t - 1)
        np.testing.assert_array_equal(b.obs["flag"][i], steps % 2)


def test_windows_never_cross_trajectories(tmp_path: Path) -> None:
    buf = ReplayBuffer(tmp_path, max_trajectories=10, seed=2)
    lengths = {i: 3 + 2 * i for i in range(5)}
    for i, t in lengths.items():
        buf.add(make_traj(t, ident=i), task=f"task{i}")
    b = buf.sample(batch_size=200, length=6)
    for i in range(200):
        n = int(b.token_mask[i].sum())
        ident = b.obs["pos"][i, 0, 0]
        t = lengths[int(ident)]
        assert b.tasks[i] == f"task{ident}"
        assert n == min(6, t + 1) and b.token_mask[i, :n].all()
        np.testing.assert_array_equal(b.obs["pos"][i, :n, 0], ident)
        np.testing.assert_array_equal(b.obs["pos"][i, :n, 1], b.positions[i, :n])
        assert np.all(np.diff(b.positions[i, :n]) == 1) and b.positions[i, n - 1] <= t
        assert int(b.action_mask[i].sum()) == n - 1
    assert {int(x) for x in b.obs["pos"][:, 0, 0]} == set(lengths)


def test_sampling_is_seeded(tmp_path: Path) -> None:
    for i in range(4):
        ReplayBuffer(tmp_path, max_trajectories=10, seed=0).add(make_traj(8, i), task="t")
    a = ReplayBuffer(tmp_path, max_trajectories=10, seed=3).sample(8, 4)
    b = ReplayBuffer(tmp_path, max_trajectories=10, seed=3).sample(8, 4)
    np.testing.assert_array_equal(a.obs["pos"], b.obs["pos"])


def test_reader_adopts_the_writers_files_in_order_and_evicts_like_it(tmp_path: Path) -> None:
    """The collector process hands each file it wrote to the learner's buffer: the learner's
    index then equals the writer's without a rescan, and sampling needs no disk read."""
    reader = ReplayBuffer(tmp_path, max_trajectories=3, seed=0, writer_elsewhere=True)
    writer = ReplayBuffer(tmp_path, max_trajectories=3, seed=0, keep_added=True)
    for i in range(5):
        writer.add(make_traj(3 + i, ident=i), task=f"t{i}")
    added = writer.take_added()
    assert [p.name for p, _, _ in added] == [f"traj_{i:012d}.npz" for i in range(5)]
    assert writer.take_added() == []
    for path, traj, task in added:
        reader.adopt(path, traj, task)
    reader.adopt(*added[-1])  # seen twice (e.g. after a rescan): indexed once
    assert reader.paths() == writer.paths() and len(reader) == 3
    assert all(p.exists() for p in writer.paths())  # the reader evicted from its index only
    for path in writer.paths():
        path.unlink()  # sampling adopted trajectories reads them from memory
    b = reader.sample(16, 4)
    assert set(b.tasks) <= {"t2", "t3", "t4"} and b.token_mask.any()
    assert reader.num_steps == 5 + 6 + 7


@pytest.mark.parametrize(("weighting", "expected"), [("trajectory", 0.5), ("length", 0.98)])
def test_weighting_picks_trajectories_per_trajectory_or_per_step(
    tmp_path: Path, weighting: str, expected: float
) -> None:
    buf = ReplayBuffer(tmp_path, max_trajectories=10, seed=0, weighting=weighting)
    buf.add(make_traj(2), "short")
    buf.add(make_traj(98), "long")
    tasks = [t for _ in range(100) for t in buf.sample(batch_size=20, length=8).tasks]
    assert np.mean([t == "long" for t in tasks]) == pytest.approx(expected, abs=0.04)


def test_unknown_weighting_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="weighting must be 'trajectory' or 'length'"):
        ReplayBuffer(tmp_path, max_trajectories=10, seed=0, weighting="recent")
