"""The barrier study's report: per-task scores normalised by single-task references and by chance,
the record that carries finished runs across machines, and the markdown table and PNG.

Written by `polyskill bench barrier` (benchmarks/barrier.py, which trains and scores the runs);
tested in tests/unit/test_barrier_report.py.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .machine import describe, summary_line

AGENTS = ("amago2", "baseline")


@dataclass
class RunResult:
    label: str  # "amago2/seed0", "reference/<task>/seed0" or "reference-baseline/<task>/seed0"
    env_steps: int
    budget: int
    eval: dict[str, float]
    machine: str = ""  # where it was trained and scored (summary_line); "" = this machine
    config: dict | None = None  # the run's TrainConfig as it trained (its config.json)

    @property
    def done(self) -> bool:
        return self.env_steps >= self.budget


def reference_prefix(agent: str) -> str:
    """The label prefix and directory of an agent's single-task references (amago2's keep the
    plain name they had before baseline references existed)."""
    return "reference" if agent == "amago2" else f"reference-{agent}"


def suite_reference(task: str, which: str, k: int) -> float | None:
    """A trial's return (k episodes) of the suite's random or scripted-expert policy, where the
    suite has one (Meta-World: trainer/envs/metaworld_v3_reference_returns.json)."""
    from polyskill.trainer.envs.metaworld import reference_returns

    ref = reference_returns(task)
    return None if ref is None else k * ref[which]


def recorded_report(path: Path, steps: int, eval_trials: int) -> dict:
    """The study's earlier report, if it was made at the same budget and evaluation (else {})."""
    if not path.exists():
        return {}
    old = json.loads(path.read_text())
    return old if (old.get("steps"), old.get("eval_trials")) == (steps, eval_trials) else {}


def recorded_runs(old: dict) -> dict[str, RunResult]:
    """The runs of an earlier report, each with the machine it ran on and its config."""
    machine = summary_line(old["machine"]) if "machine" in old else "unknown"
    return {
        label: RunResult(label, r["env_steps"], r["budget"], r["eval"], r.get("machine", machine),
                         r.get("config"))
        for label, r in old.get("runs", {}).items()
    }  # fmt: skip


def record(run: RunResult, here: dict) -> dict:
    """A run as the report stores it: enough to score it again on a machine without it."""
    return {"env_steps": run.env_steps, "budget": run.budget, "done": run.done, "eval": run.eval,
            "machine": run.machine or summary_line(here), "config": run.config}  # fmt: skip


def _task_score(result: RunResult, task: str) -> float | None:
    return result.eval.get(f"eval/{task}/return")


def _success(result: RunResult | None, task: str) -> float | None:
    return None if result is None else result.eval.get(f"eval/{task}/success")


def _gain(result: RunResult, task: str, k: int) -> float | None:
    first, last = (result.eval.get(f"eval/{task}/return_ep{i}") for i in (1, k))
    return None if first is None or last is None else last - first


def report(
    args: argparse.Namespace,
    results: dict[str, RunResult],
    tasks: list[str],
    k: int,
    chance: dict[str, float | None],
) -> dict:
    rows = []
    ref_agents = getattr(args, "reference_agents", ["amago2"])
    for agent in AGENTS:
        # Each agent against its own single-task runs where they were trained (what crowding out
        # means), else against amago2's.
        ref_agent = agent if agent in ref_agents else "amago2"
        for task in tasks:
            scores, refs, normed, above, gains, succ, ref_succ = [], [], [], [], [], [], []
            ref_all: list[float] = []  # every seed's reference, with or without its mix run
            rand = chance.get(task)
            expert = suite_reference(task, "expert", k)
            for seed in args.seeds:
                run = results.get(f"{agent}/seed{seed}")
                ref = results.get(f"{reference_prefix(ref_agent)}/{task}/seed{seed}")
                s = _task_score(run, task) if run else None
                r = _task_score(ref, task) if ref else None
                if r is not None:
                    ref_all.append(r)
                if (x := _success(ref, task)) is not None:
                    ref_succ.append(x)
                if s is None:
                    continue
                scores.append(s)
                if (x := _success(run, task)) is not None:
                    succ.append(x)
                if (g := _gain(run, task, k)) is not None:
                    gains.append(g)
                if r is not None:
                    refs.append(r)
                if r not in (None, 0):
                    normed.append(s / r)
                if r is not None and rand is not None and r > rand:
                    above.append((s - rand) / (r - rand))
            rows.append(
                {
                    "agent": agent,
                    "task": task,
                    "reference_agent": ref_agent,
                    "return": _mean(scores),
                    "return_per_seed": scores,
                    "chance": rand,
                    "reference_return": _mean(ref_all),
                    "reference_return_per_seed": ref_all,
                    "normalised": _mean(normed),
                    "normalised_above_chance": _mean(above),
                    "normalised_above_chance_per_seed": above,
                    "seeds_at_80_percent": sum(x >= 0.8 for x in above),
                    **above_chance_of_means(scores, refs, rand),
                    "in_context_gain": _mean(gains),
                    "success": _mean(succ),
                    "reference_success": _mean(ref_succ),
                    "expert": expert,
                    "normalised_expert": (
                        None if not scores or expert is None or rand is None
                        else (_mean(scores) - rand) / (expert - rand)
                    ),
                    "seeds": len(scores),
                }
            )
    return {
        "preset": args.preset,
        "rescale": args.rescale,
        "settings": list(args.overrides),
        "steps": args.steps,
        "seeds": args.seeds,
        "eval_trials": args.eval_trials,
        "machine": (here := describe()),
        "runs": {k: record(r, here) for k, r in results.items()},
        "rows": rows,
    }


def above_chance_of_means(
    scores: list[float], refs: list[float], rand: float | None, resamples: int = 2000
) -> dict[str, float | list[float] | None]:
    """(mean return - chance) / (mean reference - chance), with a 90 % bootstrap interval.

    A mix and its reference share only a seed number: their training noise is independent (the
    dark room's references alone span 4,281-6,641 over four seeds), so a per-seed ratio carries
    two runs' noise. The ratio of the seed means, with seeds resampled independently on both
    sides, says how far the seeds at hand pin the score down."""
    none = {"above_chance_of_means": None, "above_chance_of_means_90": None}
    if not scores or not refs or rand is None or np.mean(refs) <= rand:
        return none
    rng = np.random.default_rng(0)
    s = rng.choice(scores, (resamples, len(scores))).mean(axis=1)  # (resamples,)
    r = rng.choice(refs, (resamples, len(refs))).mean(axis=1)
    ok = r > rand  # a resample whose reference is at chance has no margin to keep
    boot = (s[ok] - rand) / (r[ok] - rand)
    return {
        "above_chance_of_means": float((np.mean(scores) - rand) / (np.mean(refs) - rand)),
        "above_chance_of_means_90": (
            [float(x) for x in np.percentile(boot, [5, 95])] if boot.size else None
        ),
    }


def _mean(xs: list[float]) -> float | None:
    return float(np.mean(xs)) if xs else None


def write(summary: dict, out: Path, name: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(summary, indent=2))
    kept = set(summary.get("kept", []))
    partial = [k for k, r in summary["runs"].items() if not r["done"] and k not in kept]
    # Tasks with success flags get a success column; a suite with a scripted expert (Meta-World)
    # gets the expert-normalised one.
    success = any(r["success"] is not None for r in summary["rows"])
    expert = any(r["expert"] is not None for r in summary["rows"])
    unrescaled = any(r.get("unrescaled_above_chance") is not None for r in summary["rows"])
    lines = [
        f"# Reward-scale barrier: `{name}`",
        "",
        f"Preset `{summary['preset']}`, rescale {summary['rescale'] or 'none'}, settings "
        f"{' '.join(f'`{x}`' for x in summary['settings']) or 'as in the preset'}, budget "
        f"{summary['steps']:,} env steps per run, seeds {summary['seeds']}, "
        f"{summary['eval_trials']} evaluation trials per task, amago2 TD targets "
        f"{summary.get('td_target', 'scalar')}, machine: {summary_line(summary['machine'])}.",
        "",
        "Normalised: return / single-task reference (trained by the agent named in the "
        "reference column, same budget and seed); above chance: (return - chance) / "
        "(reference - chance), per seed, then averaged; at 80 %: seeds where that is >= 0.8 "
        "(the claim's bar); seed means: (mean return - chance) / (mean reference - chance), "
        "in brackets a 90 % bootstrap interval with the seeds of the mix and of the references "
        "resampled independently (they share only the seed number). In-context gain: last "
        "episode of a trial "
        "minus the first. Returns are per trial (all its episodes)."
        + (f" Unrescaled: the same row's above-chance score without the rescaling "
           f"(`{summary['unrescaled']['name']}`, seeds {summary['unrescaled']['seeds']})."
           if unrescaled else "")
        + (" Success: share of episodes solved (the single-task reference's in brackets)."
           if success else "")
        + (" Expert-normalised: (return - chance) / (scripted expert - chance), the suite's "
           "random and expert returns per episode times the episodes per trial."
           if expert else ""),
        "",
        "| agent | task | return (per seed) | chance | reference | reference return (per seed) "
        "| normalised "
        "| above chance (per seed) | at 80 % | above chance, seed means [90 %] |"
        + (" unrescaled |" if unrescaled else "")
        + " in-context gain |" + (" success (reference) |" if success else "")
        + (" expert-normalised |" if expert else "") + " seeds |",
        "|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if unrescaled else "")
        + ("---|" if success else "") + ("---|" if expert else "") + "---|",
    ]

    def fmt(x: float | None, spec: str = ".3f") -> str:
        return "-" if x is None else format(x, spec)

    def each(xs: list[float], spec: str) -> str:
        return f" ({' / '.join(format(x, spec) for x in xs)})" if xs else ""

    for r in summary["rows"]:
        lines.append(
            f"| {r['agent']} | {r['task']} | {fmt(r['return'])}"
            f"{each(r['return_per_seed'], '.3g')} | {fmt(r['chance'])} | "
            f"{r.get('reference_agent', 'amago2')} | {fmt(r.get('reference_return'))}"
            f"{each(r.get('reference_return_per_seed', []), '.3g')} | "
            f"{fmt(r['normalised'], '.2f')} | "
            f"{fmt(r['normalised_above_chance'], '.2f')}"
            f"{each(r['normalised_above_chance_per_seed'], '.2f')} | "
            f"{_at_80(r)} | {_of_means(r)} |"
            + (f" {fmt(r.get('unrescaled_above_chance'), '.2f')} |" if unrescaled else "")
            + f" {fmt(r['in_context_gain'])} |"
            + (f" {fmt(r['success'], '.2f')} ({fmt(r['reference_success'], '.2f')}) |"
               if success else "")
            + (f" {fmt(r['normalised_expert'], '.2f')} |" if expert else "")
            + f" {r['seeds']} |"
        )
    if partial:
        lines += ["", f"Partial runs (short of the budget, reported as reached): {partial}"]
    if summary.get("carried"):
        lines += ["", "Runs scored from the earlier report (their run directories were not on the "
                  "machine that wrote this one): " + "; ".join(
                      f"{k} ({summary['runs'][k]['machine']})" for k in summary["carried"])]
    if summary.get("kept"):
        lines += ["", "Runs kept from the earlier report but not in this table (seeds or runs "
                  "this call did not score, or trained with other settings; see the JSON): "
                  + ", ".join(summary["kept"])]
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    plot(summary, out / f"{name}.png")


def _of_means(row: dict) -> str:
    """"0.80 [0.55-1.02]": the ratio of seed means and its bootstrap interval ("-": undefined)."""
    value, interval = row.get("above_chance_of_means"), row.get("above_chance_of_means_90")
    if value is None:
        return "-"
    return f"{value:.2f}" + (f" [{interval[0]:.2f}-{interval[1]:.2f}]" if interval else "")


def _at_80(row: dict) -> str:
    """Seeds whose above-chance score reaches the claim's 0.8, as "2 of 3" ("-": undefined)."""
    above = row["normalised_above_chance_per_seed"]
    return f"{row['seeds_at_80_percent']} of {len(above)}" if above else "-"


def with_unrescaled(summary: dict, out: Path, name: str) -> dict:
    """A rescaled study's rows get the unrescaled study's above-chance score (its report in
    `out`, if run): "loses little when one task is rescaled" reads off one table."""
    path = out / f"{name}.json"
    if not summary["rescale"] or not path.exists():
        return summary
    base = json.loads(path.read_text())
    # like for like only: a score against another agent's reference is left out
    scores = {
        (r["agent"], r["task"], r.get("reference_agent", "amago2")): r["normalised_above_chance"]
        for r in base["rows"]
    }
    for r in summary["rows"]:
        r["unrescaled_above_chance"] = scores.get((r["agent"], r["task"], r["reference_agent"]))
    summary["unrescaled"] = {"name": name, "seeds": base["seeds"]}
    return summary


def plot(summary: dict, path: Path) -> str:
    """Bars: mean normalised score per task and agent (above chance where chance is known);
    dots: the seeds. Without a single-task reference above chance (`--no-reference`, or
    references that learned nothing) the bars are the expert-normalised score where the suite
    has a scripted expert (Meta-World). A study of references alone (`--no-mix`) plots them.
    Returns what the bars show: "reference", "expert" or "references"."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if all(r["return"] is None for r in summary["rows"]):
        return _plot_references(summary, path, plt)
    tasks = sorted({r["task"] for r in summary["rows"]})
    rows = {(r["agent"], r["task"]): r for r in summary["rows"]}
    # NOTE: a reference score is readable where it is above chance (or chance is unknown); with
    # none readable (no references, or none above chance: Meta-World at 300k) the bars would be
    # empty, so they show the expert-normalised score where the suite has one.
    readable = any((r["normalised_above_chance"] if r["chance"] is not None else r["normalised"])
                   is not None for r in summary["rows"])
    by_expert = not readable and any(
        r.get("normalised_expert") is not None for r in summary["rows"])
    fig, ax = plt.subplots(figsize=(1.8 * len(tasks) + 2, 3.5))
    width = 0.38
    for i, agent in enumerate(AGENTS):
        for j, task in enumerate(tasks):
            r = rows[(agent, task)]
            if by_expert:
                mean, seeds = r.get("normalised_expert") or 0.0, []
            elif r["chance"] is not None:
                mean = r["normalised_above_chance"] or 0.0
                seeds = r["normalised_above_chance_per_seed"]
            else:
                mean, seeds = r["normalised"] or 0.0, []
            x = j + (i - 0.5) * width
            ax.bar(x, mean, width, color=f"C{i}", label=agent if j == 0 else None)
            ax.plot([x] * len(seeds), seeds, "k.", markersize=4)
    if by_expert:
        ax.set_ylabel("(return - random) /\n(scripted expert - random)")
        ax.set_title("no single-task reference above chance: against the suite's random and "
                     "expert policies",
                     fontsize=9)
    else:
        ax.axhline(0.8, color="grey", linestyle="--", linewidth=1, label="80 % of single-task")
        ax.set_ylabel("(return - chance) /\n(reference - chance)")
    ax.axhline(0.0, color="black", linewidth=0.5)
    ax.set_xticks(np.arange(len(tasks)), tasks, rotation=15)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return "expert" if by_expert else "reference"


def _plot_references(summary: dict, path: Path, plt) -> str:
    """Single-task references without mixes: each task's reference return as a share of the
    scripted expert's margin over random where the suite has both, else the plain return."""
    refs = {r["task"]: r for r in summary["rows"] if r["reference_return"] is not None}
    tasks = sorted(refs)
    by_expert = all(refs[t]["expert"] is not None and refs[t]["chance"] is not None
                    for t in tasks)
    fig, ax = plt.subplots(figsize=(1.8 * max(len(tasks), 1) + 2, 3.5))
    for j, task in enumerate(tasks):
        r = refs[task]
        values = list(r["reference_return_per_seed"])
        if by_expert:
            values = [(x - r["chance"]) / (r["expert"] - r["chance"]) for x in values]
        ax.bar(j, float(np.mean(values)), 0.5, color="C0",
               label=f"{r['reference_agent']} alone" if j == 0 else None)
        ax.plot([j] * len(values), values, "k.", markersize=4)
    ax.axhline(0.0, color="black", linewidth=0.5)
    ax.set_ylabel("(reference - random) /\n(scripted expert - random)" if by_expert
                  else "reference return")
    ax.set_title("references alone (no mix)"
                 + ("; below 0 = worse than random" if by_expert else ""), fontsize=9)
    ax.set_xticks(np.arange(len(tasks)), tasks, rotation=15)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return "references"
