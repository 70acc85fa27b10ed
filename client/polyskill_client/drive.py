"""`polyskill drive`: run gymnasium envs against a policy server and report in-context adaptation.

Each of N sessions owns one env instance and plays T trials of K episodes; a trial is one server
session (one context), the task is resampled at a trial start (`env.unwrapped.sample_task(rng)`
when the env has it, as the trainer's TrialEnv does) and kept across its K episodes. Reports the
mean return (and success rate, when the env's info has "success"/"is_success") for each episode
index 1..K - episode K minus episode 1 is the in-context gain - and client-side step latency.

    polyskill drive --server localhost:50051 --env polyskill/Bandit-v0 --sessions 4 --episodes 10
    polyskill drive --server localhost:50051 --env CartPole-v1 --sessions 64 --batch  # ActBatch
    python -m polyskill_client.drive --server HOST:PORT --env CartPole-v1 --json   # client only
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .client import PolicyClient
from .cpu_latency import hold_or_report
from .errors import PolyskillError, SpecMismatch
from .retry import RetryPolicy

BUILTIN_PREFIX = "polyskill/"
BUILTIN_MODULE = "polyskill.trainer.envs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", default=os.environ.get("POLYSKILL_SERVER", "localhost:50051"),
                        help="policy server HOST:PORT (env POLYSKILL_SERVER)")
    parser.add_argument("--env", required=True, help="gymnasium env id, e.g. polyskill/Bandit-v0")
    parser.add_argument("--env-kwargs", default="{}", type=json.loads,
                        help='JSON keyword arguments for gymnasium.make, e.g. \'{"num_arms": 5}\'')
    parser.add_argument("--sessions", type=int, default=1, help="env instances run at once")
    parser.add_argument("--episodes", type=int, default=10, help="episodes per trial (K)")
    parser.add_argument("--trials", type=int, default=1, help="trials per session")
    parser.add_argument("--seed", type=int, default=0, help="seeds envs, tasks and sampling")
    parser.add_argument("--max-steps", type=int, default=1000,
                        help="cap on steps per episode (for envs that never end)")
    parser.add_argument("--model", default="", help="alias or version to pin (default: server's)")
    parser.add_argument("--deterministic", action="store_true", help="take the policy's mode")
    parser.add_argument("--unary", action="store_true", help="one Act call per step (no stream)")
    parser.add_argument("--batch", action="store_true",
                        help="step every env instance in one ActBatch call per tick, from one "
                        "thread (how a vectorised simulator drives the server)")
    parser.add_argument("--timeout", type=float, default=10.0, help="per-step deadline, seconds")
    parser.add_argument("--token", default=os.environ.get("POLYSKILL_TOKEN"),
                        help="bearer token (env POLYSKILL_TOKEN)")
    parser.add_argument("--tls", action="store_true", help="connect with TLS (system roots)")
    parser.add_argument("--ca", default=None, help="PEM CA bundle for TLS (implies --tls)")
    parser.add_argument("--import", dest="imports", action="append", default=[],
                        metavar="MODULE", help="import a module that registers envs (repeatable); "
                        f"{BUILTIN_MODULE} is imported for {BUILTIN_PREFIX}* ids")
    parser.add_argument("--cpu-latency-us", type=int, default=-1,
                        help="while driving, ask Linux to keep CPU wake-ups under this many "
                        "microseconds (0 = idle CPUs poll: lower step latency, more power; needs "
                        "write access to /dev/cpu_dma_latency); -1 = off")
    parser.add_argument("--json", action="store_true", help="print one JSON summary")


@dataclass
class Tally:
    """What all sessions record; appended from several threads under one lock."""

    returns: list[list[float]]  # [episode index] -> returns
    successes: list[list[float]]
    latencies_s: list[float] = field(default_factory=list)
    steps: int = 0
    errors: list[str] = field(default_factory=list)
    model: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, episode: int, ret: float, info: dict, latencies: list[float]) -> None:
        """One finished episode (index within its trial) and its steps' latencies."""
        success = info.get("success", info.get("is_success"))
        with self.lock:
            self.returns[episode].append(ret)
            if success is not None:
                self.successes[episode].append(float(success))
            self.latencies_s += latencies
            self.steps += len(latencies)


def trial_seed(seed: int, index: int, trial: int) -> int:
    """The seed of env instance `index`'s trial `trial` (env reset and session sampling)."""
    return seed * 100_003 + index * 1_009 + trial


def register_envs(env_id: str, imports: list[str]) -> None:
    """Import env-registering modules: those given, and the built-ins for polyskill/* ids."""
    import gymnasium as gym

    for name in imports:
        importlib.import_module(name)
    if env_id.startswith(BUILTIN_PREFIX) and env_id not in gym.registry:
        try:
            importlib.import_module(BUILTIN_MODULE)
        except ImportError as e:
            raise SystemExit(f"{env_id} is a built-in Polyskill task, registered by "
                             f"{BUILTIN_MODULE}, which is not importable here ({e}); install "
                             "the polyskill package or pass --import MODULE") from None


def run_session(index: int, args: argparse.Namespace, client: PolicyClient, tally: Tally) -> None:
    """One env instance: T trials x K episodes, each trial one server session."""
    import gymnasium as gym

    from .gym_adapter import GymSession

    env = gym.make(args.env, **args.env_kwargs)
    rng = np.random.default_rng([args.seed, index])
    try:
        for trial in range(args.trials):
            seed = trial_seed(args.seed, index, trial)
            sample_task = getattr(env.unwrapped, "sample_task", None)
            if callable(sample_task):
                sample_task(rng)
            with client.open_session(args.model, deterministic=args.deterministic,
                                     seed=seed + 1, streaming=not args.unary) as session:
                with tally.lock:
                    tally.model = {"name": session.model.name, "version": session.model.version,
                                   "backend": session.model.backend}
                agent = GymSession(session, env)
                reward = 0.0
                for episode in range(args.episodes):
                    obs, info = env.reset(seed=seed) if episode == 0 else env.reset()
                    ep_return, latencies = 0.0, []
                    for t in range(args.max_steps):
                        action = agent.step(obs, reward, new_episode=t == 0)
                        latencies.append(session.last.latency_s)
                        obs, reward, terminated, truncated, info = env.step(action)
                        reward = float(reward)
                        ep_return += reward
                        if terminated or truncated:
                            break
                    tally.record(episode, ep_return, info, latencies)
    except (PolyskillError, SpecMismatch) as e:
        with tally.lock:
            tally.errors.append(f"session {index}: {type(e).__name__}: {e}")
    finally:
        env.close()


@dataclass
class _Instance:
    """One env instance of a --batch run and where it is in its trials."""

    index: int
    env: Any
    rng: np.random.Generator
    seed: int
    trial: int = 0
    episode: int = 0
    t: int = 0
    session: Any = None
    obs: Any = None
    reward: float = 0.0
    ep_return: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def trial_seed(self) -> int:
        return trial_seed(self.seed, self.index, self.trial)


def _start_trial(inst: _Instance, args: argparse.Namespace, client: PolicyClient,
                 tally: Tally) -> None:
    """As run_session's trial start: resample the task, open the session, reset with the seed."""
    from .gym_adapter import check_env

    sample_task = getattr(inst.env.unwrapped, "sample_task", None)
    if callable(sample_task):
        sample_task(inst.rng)
    inst.session = client.open_session(args.model, deterministic=args.deterministic,
                                       seed=inst.trial_seed + 1)
    check_env(inst.session.model, inst.env.observation_space, inst.env.action_space)
    tally.model = {"name": inst.session.model.name, "version": inst.session.model.version,
                   "backend": inst.session.model.backend}
    inst.episode, inst.t, inst.ep_return, inst.reward = 0, 0, 0.0, 0.0
    inst.obs, _ = inst.env.reset(seed=inst.trial_seed)


def _stack(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-instance encoded observations -> fields stacked on axis 0 (text: a list)."""
    return {name: [r[name] for r in rows] if isinstance(rows[0][name], str)
            else np.stack([r[name] for r in rows]) for name in rows[0]}


def run_batched(args: argparse.Namespace, client: PolicyClient, tally: Tally) -> None:
    """--batch: the env instances step together, one ActBatch call per tick. Each plays the
    same trials, seeds and tasks as in the threaded mode; finished instances leave the batch."""
    import gymnasium as gym

    from .gym_adapter import decode, encode

    live = [_Instance(i, gym.make(args.env, **args.env_kwargs),
                      np.random.default_rng([args.seed, i]), args.seed)
            for i in range(args.sessions)]
    envs = [inst.env for inst in live]
    try:
        for inst in live:
            _start_trial(inst, args, client, tally)
        while live:
            model = live[0].session.model
            result = client.act_batch(
                [inst.session for inst in live], _stack([encode(model, i.obs) for i in live]),
                [inst.reward for inst in live], [inst.t == 0 for inst in live])
            for inst, action in zip(list(live), result.actions, strict=True):
                inst.latencies.append(result.latency_s)
                inst.obs, reward, terminated, truncated, info = inst.env.step(
                    decode(model, action))
                inst.reward = float(reward)
                inst.ep_return += inst.reward
                inst.t += 1
                if terminated or truncated or inst.t >= args.max_steps:
                    if not _end_episode(inst, info, args, client, tally):
                        live.remove(inst)
    except (PolyskillError, SpecMismatch) as e:
        tally.errors.append(f"batch: {type(e).__name__}: {e}")
    finally:
        for inst in live:
            if inst.session is not None:
                inst.session.close()
        for env in envs:
            env.close()


def _end_episode(inst: _Instance, info: dict, args: argparse.Namespace, client: PolicyClient,
                 tally: Tally) -> bool:
    """Record the episode, then start the next episode or trial; False when the instance is
    done with all its trials."""
    tally.record(inst.episode, inst.ep_return, info, inst.latencies)
    inst.latencies, inst.ep_return, inst.t = [], 0.0, 0
    inst.episode += 1
    if inst.episode < args.episodes:
        inst.obs, _ = inst.env.reset()
        return True
    inst.session.close()
    inst.session, inst.trial = None, inst.trial + 1
    if inst.trial == args.trials:
        return False
    _start_trial(inst, args, client, tally)
    return True


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def summarize(args: argparse.Namespace, tally: Tally, wall_s: float) -> dict[str, Any]:
    returns = [_mean(r) for r in tally.returns]
    has_success = any(tally.successes)
    success = [_mean(s) for s in tally.successes] if has_success else None
    lat = np.asarray(tally.latencies_s) * 1e3
    first, last = returns[0], returns[-1]
    return {
        "server": args.server, "env": args.env, "model": tally.model,
        "sessions": args.sessions, "trials_per_session": args.trials,
        "episodes_per_trial": args.episodes, "trials": len(tally.returns[-1]),
        "streaming": not args.unary, "batch": args.batch, "deterministic": args.deterministic,
        "seed": args.seed,
        "episode_returns": returns, "episode_success": success,
        "return_first": first, "return_last": last,
        "in_context_gain": None if first is None or last is None else last - first,
        "success_first": success[0] if success else None,
        "success_last": success[-1] if success else None,
        "steps": tally.steps, "wall_s": round(wall_s, 3),
        "steps_per_s": round(tally.steps / wall_s, 1) if wall_s > 0 else None,
        "latency_ms": {
            "p50": float(np.percentile(lat, 50)) if lat.size else None,
            "p99": float(np.percentile(lat, 99)) if lat.size else None,
            "mean": float(lat.mean()) if lat.size else None,
            "max": float(lat.max()) if lat.size else None,
        },
        "errors": tally.errors,
    }


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def print_report(s: dict[str, Any]) -> None:
    m = s["model"]
    print(f"{s['env']}: {s['sessions']} session(s) x {s['trials_per_session']} trial(s) x "
          f"{s['episodes_per_trial']} episodes against {s['server']}"
          + (f" (model {m['name']} v{m['version']}, {m['backend']})" if m else ""))
    for error in s["errors"]:
        print(f"error: {error}", file=sys.stderr)
    if not s["steps"]:
        return
    success = s["episode_success"]
    print(f"{'episode':>8} {'mean return':>12}" + (f" {'success':>8}" if success else ""))
    for i, r in enumerate(s["episode_returns"]):
        print(f"{i + 1:>8} {_fmt(r, '12.3f')}" + (f" {_fmt(success[i], '8.2f')}"
                                                     if success else ""))
    k = s["episodes_per_trial"]
    gain = f"in-context gain (episode {k} - episode 1): {_fmt(s['in_context_gain'], '+.3f')} return"
    if success:
        gain += f", success {_fmt(s['success_first'], '.2f')} -> {_fmt(s['success_last'], '.2f')}"
    print(gain)
    lat = s["latency_ms"]
    print(f"{s['steps']} steps in {s['wall_s']:.2f} s ({s['steps_per_s']} steps/s); client step "
          f"latency p50 {_fmt(lat['p50'], '.2f')} ms, p99 {_fmt(lat['p99'], '.2f')} ms")


def drive(args: argparse.Namespace) -> dict[str, Any]:
    """Run the sessions and return the summary (what `--json` prints); for programs like the
    demo that drive a server repeatedly."""
    register_envs(args.env, args.imports)
    tally = Tally([[] for _ in range(args.episodes)], [[] for _ in range(args.episodes)])
    started = time.perf_counter()
    with PolicyClient(args.server, token=args.token, tls=args.tls or bool(args.ca),
                      root_certificates=args.ca, timeout=args.timeout,
                      retry=RetryPolicy(max_elapsed_s=5.0)) as client:
        if args.batch:
            run_batched(args, client, tally)
            return summarize(args, tally, time.perf_counter() - started)
        threads = [threading.Thread(target=run_session, args=(i, args, client, tally),
                                    name=f"drive-{i}") for i in range(args.sessions)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return summarize(args, tally, time.perf_counter() - started)


def run(args: argparse.Namespace) -> int:
    """Entry point of `polyskill drive`; returns the exit code (1 if any session failed)."""
    try:
        import gymnasium  # noqa: F401 - fail early with the fix, not in a worker thread
    except ImportError:
        print("polyskill drive needs gymnasium: pip install 'polyskill-client[gym]'",
              file=sys.stderr)
        return 2
    for name, value in (("--sessions", args.sessions), ("--episodes", args.episodes),
                        ("--trials", args.trials), ("--max-steps", args.max_steps)):
        if value < 1:
            print(f"polyskill drive: {name} must be >= 1, got {value}", file=sys.stderr)
            return 2
    hold = hold_or_report(args.cpu_latency_us, "polyskill drive: ")
    if hold is None:
        return 2
    with hold:
        summary = drive(args)
    if args.json:
        print(json.dumps(summary))
        for error in summary["errors"]:
            print(f"error: {error}", file=sys.stderr)
    else:
        print_report(summary)
    return 1 if summary["errors"] else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="polyskill-drive", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
