"""The main job as a user runs it: `polyskill demo` trains, promotes, serves and drives on its own,
then shuts everything down and prints where the results are."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_demo_promotes_serves_and_shows_an_in_context_gain(tmp_path: Path) -> None:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    proc = subprocess.run(
        [sys.executable, "-m", "polyskill.cli", "demo", "--minutes", "1.5", "--sessions", "8"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=280,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "serving models:/demo-" in out
    promotions = int(re.search(r"\((\d+) promotion\(s\) after the first champion\)", out)[1])
    assert promotions >= 1, out
    # the rate of picking the hidden good arm, not the return: each pull's reward is a coin flip
    # (0.8 / 0.2), so over 5 rounds x 8 sessions the return's gain has a standard error near 0.09
    found = re.search(r"good arm picked: episode 1 ([0-9.]+) -> episodes 6-10 ([0-9.]+)", out)
    first, later = float(found[1]), float(found[2])
    assert later - first > 0.2, out
    assert "errors: 0" in out
    assert "mlflow ui --backend-store-uri sqlite:///" in out
    assert list(tmp_path.glob("runs/demo-*/learning_curve.png"))
