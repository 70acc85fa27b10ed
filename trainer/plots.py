"""Learning curves from a run's MLflow metric history, as a PNG people would rather look at.

python -c "from polyskill.trainer.plots import plot_run; plot_run(RUN_ID, 'curve.png')"
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: servers and CI have no display
import matplotlib.pyplot as plt  # noqa: E402

EPISODE_KEY = re.compile(r"^eval/(?P<task>[^/]+)/return_ep(?P<k>\d+)$")


def plot_run(run_id: str, out: str | Path, tracking_uri: str | None = None) -> Path:
    """Per task: trial return vs env steps (left) and return by episode of the trial at the
    last evaluation (right: the in-context gain)."""
    from .tracking import mlflow_client

    client = mlflow_client(tracking_uri)
    keys = list(client.get_run(run_id).data.metrics)
    tasks = sorted({k.split("/")[1] for k in keys if re.match(r"^eval/[^/]+/return$", k)})
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for task in tasks:
        hist = sorted(
            client.get_metric_history(run_id, f"eval/{task}/return"), key=lambda m: m.step
        )
        left.plot([m.step for m in hist], [m.value for m in hist], marker="o", label=task)
        episodes = sorted(
            (int(m["k"]), k) for k in keys if (m := EPISODE_KEY.match(k)) and m["task"] == task
        )
        if episodes:
            last = [client.get_metric_history(run_id, key)[-1].value for _, key in episodes]
            right.plot([k for k, _ in episodes], last, marker="o", label=task)
    left.set(xlabel="env steps", ylabel="eval return per trial", title="learning curve")
    right.set(
        xlabel="episode of the trial",
        ylabel="eval return",
        title="in-context adaptation (last eval)",
    )
    for ax in (left, right):
        ax.grid(alpha=0.3)
        if tasks:
            ax.legend()
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
