"""A training run as MLflow records it: params, the documented metric keys, the learning curve."""

import json
from pathlib import Path

import mlflow
import pytest

from polyskill.trainer.loop import train
from polyskill.trainer.presets import smoke


@pytest.mark.timeout(180)
def test_training_logs_metrics_params_and_curve(tmp_path: Path, monkeypatch) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # the default artifact root is ./mlruns
    cfg = smoke()
    cfg.total_steps, cfg.eval_every_steps, cfg.log_every_seconds = 1600, 800, 0.0
    cfg.eval_trials_per_task, cfg.learning_starts = 8, 320
    train(cfg, tmp_path / "run", track=True)

    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("polyskill").experiment_id])
    assert run.info.status == "FINISHED"
    keys = set(run.data.metrics)
    expected = {"eval/bandit/return", "eval/bandit/success", "eval/mean_return",
                "train/env_steps", "train/updates", "train/env_steps_per_s",
                "train/updates_per_s", "losses/actor", "losses/critic"}
    expected |= {f"eval/bandit/return_ep{k}" for k in range(1, 11)}
    assert expected <= keys, expected - keys
    history = client.get_metric_history(run.info.run_id, "eval/bandit/return")
    assert sorted(m.step for m in history) == [800, 1600]
    assert run.data.params["network.context_length"] == "11"
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
    assert "learning_curve.png" in artifacts


def test_every_checkpoint_handed_to_the_registry_is_evaluated_on_its_own_weights(
    tmp_path: Path,
) -> None:
    """The promotion gate compares eval metrics: they must describe the checkpoint's weights,
    even when evaluations and checkpoints are scheduled at different intervals."""
    seen: list[tuple[int, dict[str, float]]] = []

    def hook(path: Path, metrics: dict[str, float]) -> None:
        seen.append((json.loads((path / "counters.json").read_text())["env_steps"], metrics))

    cfg = smoke()
    cfg.total_steps, cfg.eval_every_steps, cfg.checkpoint_every_steps = 1600, 10**9, 800
    cfg.eval_trials_per_task, cfg.learning_starts = 8, 320
    train(cfg, tmp_path / "run", on_checkpoint=hook, track=False)
    assert [s for s, _ in seen][:2] == [800, 1600]
    assert all("eval/bandit/return" in m for _, m in seen)
    assert seen[0][1] != seen[1][1]  # two evaluations, one per checkpoint


def _open_store(uri: str, start, raw: bool) -> str:
    from polyskill.trainer.tracking import mlflow_client

    start.wait()
    try:
        if raw:
            client = mlflow.MlflowClient(uri, registry_uri=uri)
            client.search_experiments(max_results=1)
            client.search_registered_models(max_results=1)
        else:
            mlflow_client(uri)
        return "ok"
    except Exception as e:  # noqa: BLE001 - reported to the test
        return f"{type(e).__name__}: {e}"[:200]


@pytest.mark.timeout(120)
def test_processes_starting_together_share_a_fresh_sqlite_store(tmp_path: Path) -> None:
    """The demo starts the trainer and the server together on a new store; MLflow's table
    creation raced ("table ... already exists") until store creation took a file lock."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    for attempt in range(2):
        uri = f"sqlite:///{tmp_path}/fresh{attempt}.db"
        with ctx.Manager() as manager:
            start = manager.Event()
            with ctx.Pool(4) as pool:
                pending = [pool.apply_async(_open_store, (uri, start, False)) for _ in range(4)]
                start.set()
                results = [p.get(timeout=100) for p in pending]
        assert results == ["ok"] * 4, results
