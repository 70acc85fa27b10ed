"""Every observation kind the network takes builds, steps and agrees with the full forward;
spaces it cannot take are rejected at config time with the space named."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from polyskill.agent.config import NetworkConfig
from polyskill.agent.network import AgentNetwork
from polyskill.agent.policy import Policy, StepInputs
from polyskill.agent.spaces import (
    SpaceError,
    action_spec_from_space,
    batch_observations,
    obs_spec_from_space,
    validate_observation,
)

MIXED = gym.spaces.Dict(
    {
        "image": gym.spaces.Box(0, 255, (12, 12, 3), np.uint8),
        "joints": gym.spaces.Box(-1, 1, (5,), np.float32),
        "mode": gym.spaces.Discrete(4),
        "keys": gym.spaces.MultiDiscrete([2, 3]),  # a field named like a dict method
    }
)


def small(context: int = 6) -> NetworkConfig:
    return NetworkConfig(
        d_model=32,
        num_layers=1,
        num_heads=2,
        d_ff=64,
        dropout=0.0,
        context_length=context,
        encoder_hidden=32,
        head_hidden=32,
        num_critics=2,
        gammas=(0.9, 0.99),
        num_bins=16,
        image_channels=8,
    )


@pytest.mark.parametrize(
    "action_space", [gym.spaces.Discrete(3), gym.spaces.Box(-2.0, 2.0, (2,), np.float32)]
)
def test_dict_of_every_kind_steps_like_the_full_forward(action_space: gym.Space) -> None:
    torch.manual_seed(0)
    net = AgentNetwork(small(), obs_spec_from_space(MIXED), action_spec_from_space(action_space))
    net.eval()
    MIXED.seed(0)
    action_space.seed(0)
    T, B = 9, 2  # longer than the context: the window slides
    raw = [[MIXED.sample() for _ in range(B)] for _ in range(T)]
    obs = [
        batch_observations(net.obs_spec, {k: np.stack([o[k] for o in row]) for k in MIXED})
        for row in raw
    ]
    actions = np.stack([np.stack([action_space.sample() for _ in range(B)]) for _ in range(T)])
    prev = np.concatenate([np.zeros_like(actions[:1]), actions[:-1]])  # (T, B[, A])
    rewards = np.random.default_rng(0).normal(size=(T, B)).astype(np.float32)
    prev_r = np.concatenate([np.zeros((1, B), np.float32), rewards[:-1]])
    new_ep = np.zeros((T, B), bool)
    new_ep[0] = True

    def seq(x: np.ndarray) -> torch.Tensor:  # (T, B, ...) -> (B, T, ...)
        return torch.as_tensor(np.swapaxes(x, 0, 1))

    with torch.no_grad():
        full = net.features(
            {k: seq(np.stack([o[k] for o in obs])) for k in MIXED},
            seq(prev),
            seq(prev_r),
            seq(new_ep),
            torch.arange(T).expand(B, T),
        )
    policy = Policy(net, num_slots=B)  # the acting path takes every kind of field too
    for t in range(T):
        params = policy.step(StepInputs(obs[t], prev[t], prev_r[t], new_ep[t], np.full(B, t)))
        assert len(params) == B
    cache = net.transformer.make_cache(B)
    with torch.no_grad():
        stepped = torch.stack(
            [
                net.step_features(
                    {k: torch.as_tensor(v) for k, v in obs[t].items()},
                    torch.as_tensor(prev[t]),
                    torch.as_tensor(prev_r[t]),
                    torch.as_tensor(new_ep[t]),
                    torch.full((B,), t),
                    cache,
                )
                for t in range(T)
            ],
            dim=1,
        )
    torch.testing.assert_close(stepped, full, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("space", "message"),
    [
        (gym.spaces.Box(0, 1, (3, 4), np.float32), "neither a vector nor a uint8 HxWxC image"),
        (gym.spaces.Tuple([gym.spaces.Discrete(2)]), "cannot take"),
        (gym.spaces.Discrete(3, start=1), "start must be 0"),
    ],
)
def test_unsupported_observation_spaces_are_named(space: gym.Space, message: str) -> None:
    with pytest.raises(SpaceError, match=message):
        obs_spec_from_space(space)


def test_unsupported_action_spaces_are_named() -> None:
    with pytest.raises(SpaceError, match="not supported"):
        action_spec_from_space(gym.spaces.MultiBinary(3))
    with pytest.raises(SpaceError, match="finite bounds"):
        action_spec_from_space(gym.spaces.Box(-np.inf, np.inf, (2,), np.float32))


def test_validation_names_the_field_and_the_problem() -> None:
    spec = obs_spec_from_space(MIXED)
    good = {k: np.asarray(v) for k, v in MIXED.sample().items()}
    validate_observation(spec, good)
    cases = [
        ({**good, "joints": np.zeros(4, np.float32)}, "'joints': expected shape"),
        ({**good, "joints": np.full(5, np.nan, np.float32)}, "NaN or inf"),
        ({**good, "mode": np.int64(7)}, "'mode': values must be in"),
        ({**good, "image": good["image"].astype(np.float32)}, "expected uint8 image"),
        ({k: v for k, v in good.items() if k != "keys"}, "missing \\['keys'\\]"),
    ]
    for obs, message in cases:
        with pytest.raises(SpaceError, match=message):
            validate_observation(spec, obs)
