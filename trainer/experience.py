"""Where the learner's experience comes from: acting inline, or in a collector process.

- InlineExperience: the loop alternates acting and learning in one process (deterministic for a
  seed; what the tests use).
- ProcessExperience: a separate process acts with its own copy of the network and writes finished
  trials straight into the on-disk replay, while the learner keeps the other core busy. Each
  report to the learner carries the files it wrote, arrays included, so the learner indexes and
  samples them without reading the disk. The learner publishes weights into shared memory every
  iteration; the collector picks them up between its steps. This is how `bench train` reaches
  its env-step and update rates on 2 cores.
Both report (env steps so far, finished trials) to the loop; both stop cleanly and flush the
trials in progress to the replay, so a stop loses no data.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import signal
import time
from pathlib import Path

import torch

from polyskill.agent.network import AgentNetwork
from polyskill.agent.policy import Policy
from polyskill.malloc import mmap_large_blocks

from .collector import Collector
from .config import TrainConfig
from .replay import ReplayBuffer
from .vector import make_vector_env

log = logging.getLogger(__name__)
Trials = list[tuple[str, float]]  # (task, trial return)


def epsilon_at(cfg: TrainConfig, env_steps: int) -> float:
    """Exploration annealed linearly from eps_start to eps_end over eps_anneal_steps."""
    frac = min(1.0, env_steps / max(1, cfg.eps_anneal_steps))
    return cfg.eps_start + frac * (cfg.eps_end - cfg.eps_start)


def _make_collector(
    cfg: TrainConfig,
    network: AgentNetwork,
    replay: ReplayBuffer,
    seed: int,
    device: torch.device | str,
) -> Collector:
    envs = make_vector_env(cfg.tasks, cfg.episodes_per_trial, cfg.num_envs, cfg.vector)
    return Collector(
        envs,
        Policy(network, cfg.num_envs, device),
        network.obs_spec,
        network.action_spec,
        replay,
        seed=seed,
        continuous_noise=cfg.continuous_noise,
        randomize_epsilon=cfg.eps_randomize,
    )


class InlineExperience:
    def __init__(
        self,
        cfg: TrainConfig,
        network: AgentNetwork,
        replay: ReplayBuffer,
        env_steps: int,
        device: torch.device,
    ) -> None:
        self.cfg, self.env_steps = cfg, env_steps
        self.collector = _make_collector(cfg, network, replay, cfg.seed + env_steps, device)

    def collect(self) -> Trials:
        trials: Trials = []
        eps = epsilon_at(self.cfg, self.env_steps)
        for _ in range(self.cfg.steps_per_iteration):
            trials += [(t.task, t.ret) for _, t in self.collector.step(eps)]
        self.env_steps += self.cfg.steps_per_iteration * self.cfg.num_envs
        return trials

    def publish(self, network: AgentNetwork) -> None:
        """Nothing to do: the collector acts with the learner's own network."""

    def close(self) -> None:
        self.collector.flush()
        self.collector.envs.close()


class SharedWeights:
    """A state dict in shared memory with a version counter, guarded by a lock."""

    def __init__(self, network: AgentNetwork, ctx: mp.context.BaseContext) -> None:
        self.tensors = {
            k: v.detach().cpu().clone().share_memory_() for k, v in network.state_dict().items()
        }
        self.version = ctx.Value("q", 0, lock=False)
        self.lock = ctx.Lock()

    def publish(self, network: AgentNetwork) -> None:
        with self.lock, torch.no_grad():
            for k, v in network.state_dict().items():
                self.tensors[k].copy_(v)
            self.version.value += 1

    def load_into(self, network: AgentNetwork) -> int:
        with self.lock:
            network.load_state_dict(self.tensors)
            return self.version.value


def _collector_main(
    cfg_dict: dict,
    replay_dir: str,
    weights: SharedWeights,
    out: mp.Queue,
    stop: mp.Event,
    env_steps: int,
    parent_pid: int,
) -> None:
    """The collector process: act, write trials to the replay, report progress, follow weights."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the learner decides when we stop
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    torch.set_num_threads(1)
    mmap_large_blocks()
    from .loop import build_network  # noqa: PLC0415 - avoid an import cycle at module load

    cfg = TrainConfig.from_dict(cfg_dict)
    network = build_network(cfg)
    version = weights.load_into(network)
    replay = ReplayBuffer(
        Path(replay_dir), cfg.replay_max_trajectories, seed=cfg.seed + env_steps, keep_added=True
    )
    experience = InlineExperience(cfg, network, replay, env_steps, "cpu")
    rate, t0, steps0 = cfg.collector_max_steps_per_s, time.monotonic(), env_steps
    try:
        while not stop.is_set() and os.getppid() == parent_pid:
            trials = experience.collect()
            out.put((experience.env_steps, trials, replay.take_added()))
            if weights.version.value != version:
                version = weights.load_into(network)
            if rate > 0:  # sleep off any lead over the cap
                ahead = (experience.env_steps - steps0) / rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
    finally:
        experience.close()
        out.put((experience.env_steps, [], replay.take_added()))  # the trials it flushed
        out.put(None)


class ProcessExperience:
    def __init__(
        self, cfg: TrainConfig, network: AgentNetwork, replay: ReplayBuffer, env_steps: int
    ) -> None:
        ctx = mp.get_context("spawn")
        self.env_steps, self.replay = env_steps, replay
        self.weights = SharedWeights(network, ctx)
        self.queue: mp.Queue = ctx.Queue()
        self.stop = ctx.Event()
        self.process = ctx.Process(
            target=_collector_main,
            name="polyskill-collector",
            daemon=True,
            args=(
                cfg.to_dict(),
                str(replay.root),
                self.weights,
                self.queue,
                self.stop,
                env_steps,
                os.getpid(),
            ),
        )
        self.process.start()

    def collect(self, wait: bool = False) -> Trials:
        """Drain the collector's progress reports; with `wait`, block for at least one."""
        trials: Trials = []
        block = wait
        while True:
            try:
                msg = self.queue.get(timeout=60.0) if block else self.queue.get_nowait()
            except queue.Empty:
                if block:
                    raise RuntimeError("the collector process sent nothing for 60 s") from None
                return trials
            block = False
            if msg is None:
                raise RuntimeError("the collector process stopped unexpectedly")
            trials += self._receive(msg)

    def _receive(self, msg: tuple[int, Trials, list]) -> Trials:
        """One report: env steps so far, finished trials, and the replay files just written."""
        self.env_steps, trials, added = msg
        for path, traj, task in added:
            self.replay.adopt(path, traj, task)
        return trials

    def publish(self, network: AgentNetwork) -> None:
        self.weights.publish(network)

    def close(self) -> None:
        self.stop.set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # drain until the collector has flushed
            try:
                msg = self.queue.get(timeout=1.0)
            except queue.Empty:
                if not self.process.is_alive():
                    break
                continue
            if msg is None:
                break
            self._receive(msg)
        self.process.join(timeout=10)
        if self.process.is_alive():
            log.warning("collector process did not stop; terminating it")
            self.process.terminate()
