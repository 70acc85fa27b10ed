"""`polyskill bench curve`: a chunked barrier study's reports, budget by budget, as learning curves.

    polyskill bench barrier --preset metaworld-scales --steps 100000 --root R --out OUT_100k
    polyskill bench barrier --preset metaworld-scales --steps 200000 --root R --out OUT_200k
    polyskill bench curve OUT_100k OUT_200k --out docs/results/metaworld-curve

Raising `--steps` with the same `--root` resumes every run from its last checkpoint, and each call
scores the runs once at its budget; a report holds one budget only, so a study that grows chunk by
chunk leaves one report per budget. This puts them side by side: per run and task, the return (and
success where the suite has it) at each budget, in a markdown table, a JSON file and a PNG (return
against env steps, with chance and the scripted expert as lines where known). Only measured points
are drawn, each at the env steps its run had reached when it was scored.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Point:
    """One run's score on one task, as one report recorded it."""

    env_steps: int
    budget: int
    ret: float
    success: float | None


def load_reports(paths: list[Path]) -> list[dict]:
    """Reports from JSON files or from the `--out` folders that hold them, sorted by budget.
    They must come from one preset: a curve across presets compares different tasks."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = sorted(p.glob("*.json"))
            if not found:
                raise ValueError(f"{p}: no report (*.json) in this folder; pass a `bench barrier "
                                 "--out` folder or its JSON file")
            files += found
        elif p.suffix == ".json" and p.is_file():
            files.append(p)
        else:
            raise ValueError(f"{p}: not a report; pass a `bench barrier --out` folder or a .json")
    reports = []
    for f in files:
        report = json.loads(f.read_text())
        if not {"preset", "steps", "runs", "rows"} <= set(report):
            raise ValueError(f"{f}: not a `bench barrier` report (needs preset, steps, runs, rows)")
        reports.append(report)
    presets = {r["preset"] for r in reports}
    if len(presets) > 1:
        raise ValueError(f"reports of several presets {sorted(presets)}: one curve per preset")
    return sorted(reports, key=lambda r: r["steps"])


def series_name(report: dict, label: str, several_settings: bool) -> str:
    """"reference/reach-v3/seed0", prefixed with the report's settings when the reports differ
    in them (two critics' curves in one plot)."""
    if not several_settings:
        return label
    settings = " ".join(report.get("settings", [])) or "preset"
    return f"{label} [{settings}]"


def several_settings(reports: list[dict]) -> bool:
    return len({tuple(r.get("settings", [])) for r in reports}) > 1


def curves(reports: list[dict]) -> dict[tuple[str, str], list[Point]]:
    """(series, task) -> its points in env-step order. A run scored at the same env steps by
    two reports (a finished run carried into a larger budget's call) counts once."""
    several = several_settings(reports)
    out: dict[tuple[str, str], dict[int, Point]] = {}
    for report in reports:
        for label, run in report["runs"].items():
            tasks = {k.split("/")[1] for k in run["eval"] if k.endswith("/return")}
            for task in sorted(tasks):
                point = Point(
                    env_steps=int(run["env_steps"]),
                    budget=int(run["budget"]),
                    ret=float(run["eval"][f"eval/{task}/return"]),
                    success=run["eval"].get(f"eval/{task}/success"),
                )
                out.setdefault((series_name(report, label, several), task), {})[
                    point.env_steps] = point
    return {key: [pts[s] for s in sorted(pts)] for key, pts in sorted(out.items())}


def task_lines(reports: list[dict]) -> dict[str, dict[str, float | None]]:
    """Per task, the chance and scripted-expert returns per trial the reports give."""
    lines: dict[str, dict[str, float | None]] = {}
    for report in reports:
        for row in report["rows"]:
            entry = lines.setdefault(row["task"], {"chance": None, "expert": None})
            for key in ("chance", "expert"):
                if row.get(key) is not None:
                    entry[key] = row[key]
    return lines


def markdown(reports: list[dict], data: dict[tuple[str, str], list[Point]],
             lines: dict[str, dict[str, float | None]]) -> str:
    budgets = sorted({p.budget for pts in data.values() for p in pts})
    first = reports[0]
    listed = " ".join(f"`{x}`" for x in first.get("settings", [])) or "as in the preset"
    settings = (
        "Settings differ between the reports: each run's follow it in brackets"
        if several_settings(reports)
        else f"Settings {listed}"
    )
    head = [
        f"# Learning curves: `{first['preset']}`",
        "",
        f"{settings}; "
        f"{first.get('eval_trials')} evaluation trials per task; one report per budget "
        f"({', '.join(f'{b:,}' for b in budgets)} env steps). Return per trial, success in "
        "brackets where the suite has it; a run short of its budget shows the env steps it had "
        "reached (partial).",
        "",
        "| run | task | chance | expert | " + " | ".join(f"{b:,}" for b in budgets) + " |",
        "|---|---|---|---|" + "---|" * len(budgets),
    ]

    def cell(p: Point | None) -> str:
        if p is None:
            return "-"
        text = f"{p.ret:,.1f}" + (f" ({p.success:.2f})" if p.success is not None else "")
        return text if p.env_steps >= p.budget else f"{text}, partial at {p.env_steps:,}"

    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:,.1f}"

    rows = []
    for (series, task), pts in data.items():
        at = {p.budget: p for p in pts}
        rows.append(f"| {series} | {task} | {fmt(lines.get(task, {}).get('chance'))} | "
                    f"{fmt(lines.get(task, {}).get('expert'))} | "
                    + " | ".join(cell(at.get(b)) for b in budgets) + " |")
    return "\n".join(head + rows) + "\n"


def plot(data: dict[tuple[str, str], list[Point]], lines: dict[str, dict[str, float | None]],
         path: Path) -> None:
    """One panel per task: each run's return against env steps; chance dashed, expert dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({task for _, task in data})
    # one colour per run whatever its task: seed 0's reference is the same colour in every panel
    runs = sorted({series.replace(f"/{task}/", "/") for series, task in data})
    colour = {run: f"C{i % 10}" for i, run in enumerate(runs)}
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for (series, t), pts in data.items():
            if t != task:
                continue
            ax.plot([p.env_steps for p in pts], [p.ret for p in pts], "o-", markersize=4,
                    color=colour[series.replace(f"/{task}/", "/")], label=series)
        chance, expert = lines.get(task, {}).get("chance"), lines.get(task, {}).get("expert")
        if chance is not None:
            ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label="random policy")
        if expert is not None:
            ax.axhline(expert, color="grey", linestyle=":", linewidth=1, label="scripted expert")
        ax.set_title(task, fontsize=10)
        ax.set_xlabel("env steps")
        ax.set_ylabel("return per trial")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="polyskill bench curve", description=__doc__.splitlines()[0])
    p.add_argument("reports", nargs="+", type=Path,
                   help="`bench barrier --out` folders or their .json reports, one per budget")
    p.add_argument("--out", type=Path, required=True,
                   help="path without suffix: writes OUT.md, OUT.json and OUT.png")
    args = p.parse_args(argv)
    try:
        reports = load_reports(args.reports)
    except ValueError as e:
        p.error(str(e))
    data = curves(reports)
    if not data:
        p.error("the reports hold no scored runs yet (every run still unscored)")
    lines = task_lines(reports)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = markdown(reports, data, lines)
    out = {suffix: Path(f"{args.out}.{suffix}") for suffix in ("md", "json", "png")}
    out["md"].write_text(text)
    out["json"].write_text(json.dumps({
        "preset": reports[0]["preset"],
        "settings": sorted({" ".join(r.get("settings", [])) for r in reports}),
        "tasks": lines,
        "curves": [{"run": s, "task": t, "points": [p.__dict__ for p in pts]}
                   for (s, t), pts in data.items()],
    }, indent=2))
    plot(data, lines, out["png"])
    print(text)
    print(f"wrote {args.out}.{{md,json,png}}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
