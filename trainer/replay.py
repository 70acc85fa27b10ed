"""On-disk trajectory replay: one .npz per trial, FIFO by count, protected demos, window sampling.

A trajectory is one trial of one env slot, T = number of actions:
  obs/<field>  (T+1, *field_shape)  o_0..o_T, any numeric dtype (kept)
  actions      (T, *action_shape)   int64 (T,) for discrete, float32 (T, dim) for continuous
  rewards      (T,) float32         r_t, received after a_t
  new_episode  (T+1,) bool          o_t starts an episode within the trial (o_0 True)
  terminated   (T,) bool            the trial ended in a terminal state after a_t (no bootstrap)
and the task name (stored in the file as `__task__`).

Files are written to a temp name in the same folder, fsynced, then renamed (os.replace), so a
crash never leaves a half file under a final name; leftover temp files are deleted on start.
Normal trajectories live in `trajectories/traj_<counter>.npz` (zero-padded, increasing across
restarts) and the oldest are deleted beyond `max_trajectories`; demos live in `demos/` and are
never evicted (nor counted against `max_trajectories`). Sampling is uniform over all files, demos
included. Single writer. A writer in another process (the collector process) hands each new
file to the reading buffer with `adopt()`, arrays included, so the reader never rereads or
rescans what it was told about; `refresh()` rescans the folders (on start, and when a sampled
file is gone).
Exercise it with: `.venv/bin/python -m pytest tests/unit/test_replay.py -q`.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np

Weighting = Literal["trajectory", "length"]
"""How `sample` picks trajectories: each equally likely, or in proportion to their steps."""

log = logging.getLogger(__name__)

TASK_KEY = "__task__"
OBS_PREFIX = "obs/"
TRAJ_DIR, DEMO_DIR = "trajectories", "demos"
FILE_RE = re.compile(r"^(traj|demo)_(\d+)\.npz$")
TMP_SUFFIX = ".tmp"
COUNTER_DIGITS = 12

Trajectory = dict[str, np.ndarray]


@dataclass
class Batch:
    """B windows of L tokens; padding (short windows) is at the END and masked by `token_mask`."""

    obs: dict[str, np.ndarray]  # field -> (B, L, *shape)
    prev_actions: np.ndarray  # (B, L, *action_shape): a_{t-1}, zeros at t = 0
    prev_rewards: np.ndarray  # (B, L) float32: r_{t-1}, 0 at t = 0
    new_episode: np.ndarray  # (B, L) bool
    positions: np.ndarray  # (B, L) int64: absolute step t in the trajectory (0 on padding)
    actions: np.ndarray  # (B, L, *action_shape): a_t, zeros where t == T
    rewards: np.ndarray  # (B, L) float32: r_t, 0 where none
    terminated: np.ndarray  # (B, L) bool
    token_mask: np.ndarray  # (B, L) bool: the token exists
    action_mask: np.ndarray  # (B, L) bool: a_t exists and o_{t+1} is in the window
    tasks: list[str]  # (B,) task of each window


def validate_trajectory(traj: Trajectory) -> int:
    """Check the shapes agree; returns T (number of actions)."""
    missing = {"actions", "rewards", "new_episode", "terminated"} - set(traj)
    obs_keys = [k for k in traj if k.startswith(OBS_PREFIX)]
    if missing or not obs_keys:
        raise ValueError(f"trajectory lacks {sorted(missing) or 'obs/<field> arrays'}")
    t = len(traj["actions"])
    if t < 1:
        raise ValueError("trajectory needs at least one action")
    expected = {"rewards": (t,), "terminated": (t,), "new_episode": (t + 1,)}
    for key, shape in expected.items():
        if traj[key].shape != shape:
            raise ValueError(f"{key} has shape {traj[key].shape}, expected {shape} (T={t})")
    for key in obs_keys:
        if len(traj[key]) != t + 1:
            raise ValueError(f"{key} has {len(traj[key])} steps, expected T+1={t + 1}")
    return t


def _normalise(traj: Trajectory) -> Trajectory:
    """A validated private copy with the stored dtypes (the caller may reuse its buffers)."""
    out = {k: np.array(v) for k, v in traj.items() if k != TASK_KEY}
    validate_trajectory(out)
    out["rewards"] = out["rewards"].astype(np.float32)
    out["new_episode"] = out["new_episode"].astype(bool)
    out["terminated"] = out["terminated"].astype(bool)
    return out


def write_trajectory(path: Path, traj: Trajectory, task: str) -> None:
    """Write atomically: temp file in the same folder, fsync, rename over `path`."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    with open(tmp, "wb") as f:
        np.savez(f, **traj, **{TASK_KEY: np.array(task)})
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def load_trajectory(path: Path) -> tuple[Trajectory, str]:
    """The arrays of one file and its task name."""
    with np.load(path, allow_pickle=False) as data:
        traj = {k: data[k] for k in data.files if k != TASK_KEY}
        task = str(data[TASK_KEY]) if TASK_KEY in data.files else ""
    return traj, task


class ReplayBuffer:
    """Trajectories on disk under `root`, an LRU cache of loaded ones, and window sampling."""

    def __init__(
        self,
        root: Path,
        max_trajectories: int,
        seed: int,
        cache_size: int | None = None,
        writer_elsewhere: bool = False,
        keep_added: bool = False,
        weighting: Weighting = "trajectory",
    ) -> None:
        """`writer_elsewhere`: another process adds the files (the collector process); this
        buffer only reads, and never deletes files (the writer evicts, and its temp files are
        in progress). Construct it before the writer starts: construction still clears a
        crashed run's leftovers. `keep_added`: the writer keeps what it adds for `take_added()`,
        to be passed to the reader's `adopt()`. `weighting`: how `sample` picks trajectories,
        "trajectory" (each equally likely) or "length" (in proportion to their steps, so every
        stored step is equally likely to be in a window)."""
        if weighting not in get_args(Weighting):
            raise ValueError(f"weighting must be 'trajectory' or 'length', got {weighting!r}")
        self.weighting = weighting
        if max_trajectories < 1:
            raise ValueError(f"max_trajectories must be >= 1, got {max_trajectories}")
        self.root = Path(root)
        self.max_trajectories = max_trajectories
        self.cache_size = max_trajectories if cache_size is None else cache_size
        self.rng = np.random.default_rng(seed)
        self.writer_elsewhere = writer_elsewhere
        self.keep_added = keep_added
        self._added: list[tuple[Path, Trajectory, str]] = []
        self._lock = threading.Lock()
        self._cache: OrderedDict[Path, tuple[Trajectory, str]] = OrderedDict()
        self._trajs: list[Path] = []  # oldest first
        self._demos: list[Path] = []
        self._lengths: dict[Path, int] = {}  # path -> T
        self._next_counter = 0
        for sub in (TRAJ_DIR, DEMO_DIR):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.refresh(clean_temp=True)
        self._evict()

    # ---- bookkeeping -------------------------------------------------------------------------
    def refresh(self, clean_temp: bool | None = None) -> None:
        """Rescan the folders: resume after a restart, drop temp files, see other writers' files.

        Temp files are deleted only when this buffer is the writer (default: unless
        `writer_elsewhere`): in a reader they are the writer's files in progress."""
        if clean_temp is None:
            clean_temp = not self.writer_elsewhere
        with self._lock:
            for sub in (TRAJ_DIR, DEMO_DIR) if clean_temp else ():
                for tmp in (self.root / sub).glob("*" + TMP_SUFFIX):
                    log.warning("replay: deleting leftover temp file %s", tmp)
                    tmp.unlink(missing_ok=True)
            self._trajs = self._scan(self.root / TRAJ_DIR)
            self._demos = self._scan(self.root / DEMO_DIR)
            alive = set(self._trajs) | set(self._demos)
            for path in [p for p in self._cache if p not in alive]:
                del self._cache[path]
            for path in [p for p in self._lengths if p not in alive]:
                del self._lengths[path]
            for path in alive - set(self._lengths):
                self._lengths[path] = self._read_length(path)
            counters = [self._counter(p) for p in self._trajs + self._demos]
            self._next_counter = max([self._next_counter - 1, *counters]) + 1

    @staticmethod
    def _scan(folder: Path) -> list[Path]:
        paths = [p for p in folder.iterdir() if FILE_RE.match(p.name)]
        return sorted(paths, key=ReplayBuffer._counter)

    @staticmethod
    def _counter(path: Path) -> int:
        match = FILE_RE.match(path.name)
        assert match is not None, path
        return int(match.group(2))

    @staticmethod
    def _read_length(path: Path) -> int:
        with np.load(path, allow_pickle=False) as data:
            return int(data["rewards"].shape[0])

    def _evict(self) -> None:
        """Drop the oldest trajectories beyond the cap; the writer also deletes their files."""
        with self._lock:
            while len(self._trajs) > self.max_trajectories:
                oldest = self._trajs.pop(0)
                if not self.writer_elsewhere:
                    oldest.unlink(missing_ok=True)
                self._cache.pop(oldest, None)
                self._lengths.pop(oldest, None)

    def _remember(self, path: Path, traj: Trajectory, task: str) -> None:
        self._cache[path] = (traj, task)
        self._cache.move_to_end(path)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def add(self, traj: Trajectory, task: str, demo: bool = False) -> Path:
        """Store one trajectory (a copy); returns its file. Evicts the oldest non-demo files."""
        traj = _normalise(traj)
        length = len(traj["actions"])
        with self._lock:
            prefix, sub = ("demo", DEMO_DIR) if demo else ("traj", TRAJ_DIR)
            path = self.root / sub / f"{prefix}_{self._next_counter:0{COUNTER_DIGITS}d}.npz"
            self._next_counter += 1
            write_trajectory(path, traj, task)
            (self._demos if demo else self._trajs).append(path)
            self._lengths[path] = length
            self._remember(path, traj, task)
            if self.keep_added:
                self._added.append((path, traj, task))
        self._evict()
        return path

    def take_added(self) -> list[tuple[Path, Trajectory, str]]:
        """What `add` stored since the last call (with `keep_added`), for a reader's `adopt`."""
        with self._lock:
            added, self._added = self._added, []
        return added

    def adopt(self, path: Path, traj: Trajectory, task: str) -> None:
        """Index (and cache) a file another process has just written, evicting like the writer.

        Files must be adopted in the writer's order; one seen by a rescan is not added twice."""
        with self._lock:
            demo = path.parent.name == DEMO_DIR
            known = self._demos if demo else self._trajs
            if path not in self._lengths:
                known.append(path)
                self._lengths[path] = len(traj["actions"])
            self._remember(path, traj, task)
            self._next_counter = max(self._next_counter, self._counter(path) + 1)
        self._evict()

    def __len__(self) -> int:
        return len(self._trajs) + len(self._demos)

    @property
    def num_demos(self) -> int:
        return len(self._demos)

    @property
    def num_steps(self) -> int:
        """Total actions stored, demos included."""
        return sum(self._lengths.values())

    def paths(self) -> list[Path]:
        """All files sampled from: trajectories oldest first, then demos."""
        return self._trajs + self._demos

    def get(self, path: Path) -> tuple[Trajectory, str]:
        """One trajectory and its task, from the cache or the disk."""
        with self._lock:
            if path in self._cache:
                self._cache.move_to_end(path)
                return self._cache[path]
            item = load_trajectory(path)
            self._remember(path, *item)
            return item

    # ---- sampling ----------------------------------------------------------------------------
    def _choose(self, n: int) -> list[Path]:
        """n trajectory files, drawn with replacement as `weighting` says."""
        paths = self.paths()
        if not paths:
            raise ValueError("cannot sample from an empty replay buffer")
        if self.weighting == "length":
            with self._lock:
                steps = np.fromiter((self._lengths.get(p, 1) for p in paths), float, len(paths))
            return [paths[i] for i in self.rng.choice(len(paths), size=n, p=steps / steps.sum())]
        return [paths[int(self.rng.integers(len(paths)))] for _ in range(n)]

    def _load(self, path: Path) -> tuple[Trajectory, str]:
        for _ in range(8):
            try:
                return self.get(path)
            except FileNotFoundError:  # evicted by another process since our last scan
                self.refresh()
                path = self._choose(1)[0]
        raise RuntimeError(f"replay files under {self.root} keep disappearing")

    def sample(self, batch_size: int, length: int) -> Batch:
        """`batch_size` windows of `length` tokens, each from one trajectory chosen by
        `weighting`."""
        if batch_size < 1 or length < 1:
            raise ValueError(f"batch_size and length must be >= 1, got {batch_size}, {length}")
        items = [self._load(path) for path in self._choose(batch_size)]
        first = items[0][0]
        b, n = batch_size, length
        fields = sorted(k for k in first if k.startswith(OBS_PREFIX))
        act_shape, act_dtype = first["actions"].shape[1:], first["actions"].dtype
        batch = Batch(
            obs={
                k[len(OBS_PREFIX) :]: np.zeros((b, n, *first[k].shape[1:]), first[k].dtype)
                for k in fields
            },
            prev_actions=np.zeros((b, n, *act_shape), act_dtype),
            prev_rewards=np.zeros((b, n), np.float32),
            new_episode=np.zeros((b, n), bool),
            positions=np.zeros((b, n), np.int64),
            actions=np.zeros((b, n, *act_shape), act_dtype),
            rewards=np.zeros((b, n), np.float32),
            terminated=np.zeros((b, n), bool),
            token_mask=np.zeros((b, n), bool),
            action_mask=np.zeros((b, n), bool),
            tasks=[task for _, task in items],
        )
        for i, (traj, _) in enumerate(items):
            if sorted(k for k in traj if k.startswith(OBS_PREFIX)) != fields or (
                traj["actions"].shape[1:] != act_shape
            ):
                raise ValueError("trajectories in one buffer must share obs fields and actions")
            self._fill(batch, i, traj, n)
        return batch

    def _fill(self, batch: Batch, i: int, traj: Trajectory, n: int) -> None:
        """Copy one window of `traj` into row i of `batch`."""
        t_max = len(traj["actions"])  # T
        start = int(self.rng.integers(0, max(0, t_max + 1 - n) + 1))
        end = min(start + n, t_max + 1)  # tokens o_start..o_{end-1}
        k = end - start  # tokens in the window
        for key, arr in batch.obs.items():
            arr[i, :k] = traj[OBS_PREFIX + key][start:end]
        batch.new_episode[i, :k] = traj["new_episode"][start:end]
        batch.positions[i, :k] = np.arange(start, end)
        batch.token_mask[i, :k] = True
        # Actions a_t exist for t < T: tokens start..min(end, T)-1.
        a_end = min(end, t_max)
        na = a_end - start
        batch.actions[i, :na] = traj["actions"][start:a_end]
        batch.rewards[i, :na] = traj["rewards"][start:a_end]
        batch.terminated[i, :na] = traj["terminated"][start:a_end]
        # The TD target needs o_{t+1} as the next token of this window.
        batch.action_mask[i, : k - 1] = True
        # a_{t-1}, r_{t-1}: shifted by one; the token at t = 0 keeps zeros.
        p_start = max(start, 1)
        off = p_start - start
        batch.prev_actions[i, off:k] = traj["actions"][p_start - 1 : end - 1]
        batch.prev_rewards[i, off:k] = traj["rewards"][p_start - 1 : end - 1]

    def stats(self) -> dict[str, float]:
        """Counts for logging: trajectories, demos, stored actions, cached files."""
        return {
            "replay/trajectories": float(len(self._trajs)),
            "replay/demos": float(len(self._demos)),
            "replay/steps": float(self.num_steps),
            "replay/cached": float(len(self._cache)),
        }
