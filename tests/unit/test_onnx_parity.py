"""ONNX export parity: the exported step (run by the ONNX backend, cache bound with IOBinding)
gives the same distribution as `Policy.step` for every batch size and cache fill level,
including a full (sliding) window, on discrete, dict and continuous models."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from polyskill.agent.checkpoint import load_network  # noqa: E402
from polyskill.agent.export_onnx import export_checkpoint  # noqa: E402
from polyskill.agent.policy import Policy, StepInputs  # noqa: E402
from polyskill.server.backends.base import stack_observations  # noqa: E402
from polyskill.server.backends.onnx import OnnxBackend  # noqa: E402
from polyskill.server.testing import make_checkpoint  # noqa: E402

CONTEXT = 6
NET = dict(d_model=32, num_layers=2, num_heads=4, d_ff=64, context_length=CONTEXT,
           encoder_hidden=32, head_hidden=32, num_critics=2, num_bins=16, gammas=(0.9, 0.99))
SPACES = {
    "discrete": (gym.spaces.Box(-5, 5, (4,), np.float32), gym.spaces.Discrete(3)),
    "dict": (gym.spaces.Dict({"pos": gym.spaces.Box(-1, 1, (3,), np.float32),
                              "cell": gym.spaces.Discrete(5),
                              "doors": gym.spaces.MultiDiscrete([2, 3])}),
             gym.spaces.Discrete(4)),
    "continuous": (gym.spaces.Box(-5, 5, (3,), np.float32),
                   gym.spaces.Box(-2, 2, (2,), np.float32)),
}


@pytest.fixture(scope="module", params=sorted(SPACES))
def model(request, tmp_path_factory) -> tuple[Path, gym.Space, gym.Space]:
    torch.set_num_threads(1)
    obs_space, act_space = SPACES[request.param]
    ckpt = Path(make_checkpoint(str(tmp_path_factory.mktemp(request.param)), obs_space,
                                act_space, seed=3, **NET))
    export_checkpoint(ckpt)
    return ckpt, obs_space, act_space


def _inputs(obs_space, act_space, B: int, position: int, slots: np.ndarray, rng) -> StepInputs:
    obs_space.seed(int(rng.integers(1 << 30)))
    act_space.seed(int(rng.integers(1 << 30)))
    obs = [obs_space.sample() for _ in range(B)]
    obs = [o if isinstance(o, dict) else {"obs": o} for o in obs]
    actions = np.stack([np.asarray(act_space.sample()) for _ in range(B)])
    return StepInputs(obs=obs, prev_action=actions,  # obs stacked by the caller
                      prev_reward=rng.normal(size=B).astype(np.float32) * 3,
                      new_episode=rng.random(B) < 0.2, positions=np.full(B, position),
                      slot_ids=slots, starts=np.zeros(B, np.int64))


@pytest.mark.parametrize("B", [1, 3, 64])
def test_onnx_step_matches_torch(model, B: int) -> None:
    ckpt, obs_space, act_space = model
    torch_policy = Policy(load_network(ckpt), 70)
    onnx = OnnxBackend.from_checkpoint(ckpt, 70)
    rng = np.random.default_rng(B)
    slots = rng.permutation(70)[:B]  # a scattered subset of the pool, as in the server
    worst = 0.0
    for position in range(CONTEXT * 2 + 3):  # empty cache .. full window .. slid past it
        step = _inputs(obs_space, act_space, B, position, slots, rng)
        step.obs = stack_observations(onnx.obs_spec, step.obs)
        a, b = torch_policy.step(step), onnx.step(step)
        for x, y in ((a.probs, b.probs), (a.mean, b.mean), (a.std, b.std)):
            if x is not None:
                assert x.shape == y.shape
                worst = max(worst, float(np.abs(x - y).max()))
        det = np.ones(B, bool)
        np.testing.assert_allclose(a.select(det, []), b.select(det, []), atol=1e-4)
    assert worst <= 1e-4, worst


def test_onnx_file_is_checked_and_dynamic(model) -> None:
    import onnx

    ckpt = model[0]
    m = onnx.load(str(ckpt / "model.onnx"))
    onnx.checker.check_model(m)
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
            for i in m.graph.input}
    assert dims["positions"] == ["batch"]
    assert dims["cache_k.0"][0] == "slots" and dims["cache_k.0"][2] == CONTEXT
    assert "cache_v.1" in dims
