"""`network.critic_start="zero"` centres amago2's critic on a value of 0: with PyTorch's default
init ("uniform") the bins reaching +-1e5 hold up to ~10 % each, which the trimmed read-out reads as
thousands, and which distributional TD targets bootstrap from. The zero start must still learn
(tests/unit/test_td_target_scale.py runs its critic-only test with it)."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from polyskill.agent.config import NetworkConfig
from polyskill.agent.network import AgentNetwork
from polyskill.agent.spaces import action_spec_from_space, obs_spec_from_space
from polyskill.agent.two_hot import TRIM_FLOOR

SPACES = {
    "discrete": gym.spaces.Discrete(3),
    "continuous": gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
}


def _net(action_space: gym.Space, critic_start: str, seed: int = 0) -> AgentNetwork:
    torch.manual_seed(seed)
    cfg = NetworkConfig(d_model=32, num_layers=1, num_heads=2, d_ff=64, context_length=4,
                        encoder_hidden=32, head_hidden=32, num_critics=2, num_bins=32,
                        gammas=(0.9, 0.99), critic_start=critic_start)  # fmt: skip
    obs = obs_spec_from_space(gym.spaces.Box(-5.0, 5.0, (3,), np.float32))
    return AgentNetwork(cfg, obs, action_spec_from_space(action_space)).eval()


def _critic_out(net: AgentNetwork, target: bool = False) -> torch.Tensor:
    """Critic logits for 16 random steps of random observations."""
    g = torch.Generator().manual_seed(1)
    B, T = 4, 4
    obs = {"obs": torch.randn(B, T, 3, generator=g) * 3}
    if net.action_spec.kind == "discrete":
        actions = torch.randint(0, 3, (B, T), generator=g)
    else:
        actions = torch.rand(B, T, 2, generator=g) * 2 - 1
    h = net.features(obs, actions, torch.randn(B, T, generator=g) * 100,
                     torch.zeros(B, T, dtype=torch.bool), torch.arange(T).expand(B, T))  # (B, T, D)
    critics = net.target_critics if target else net.critics
    if net.action_spec.kind == "discrete":
        return critics(h)  # (C, B, T, G, A, o)
    return critics(h, net.action_input(actions).unsqueeze(-2))  # (C, B, T, G, o)


@pytest.mark.parametrize("kind", sorted(SPACES))
@pytest.mark.parametrize("seed", [0, 1])
def test_a_zero_start_reads_near_zero_and_keeps_far_bins_below_the_floor(kind: str,
                                                                          seed: int) -> None:
    net = _net(SPACES[kind], "zero", seed)
    with torch.no_grad():
        logits = _critic_out(net)
        probs = torch.softmax(logits, -1)
        for decode in ("symlog", "trimmed"):
            values = net.bins.decode_probs(probs, decode)
            assert values.abs().max() < 1.0, (decode, values.abs().max())
        # every bin away from 0 sits below trimmed's floor: no far-bin mass to bootstrap from
        far = net.bins.values.abs() > 1.0
        assert probs[..., far].max() < TRIM_FLOOR / net.cfg.num_bins
        # the target critics start as the same function
        assert torch.equal(_critic_out(net, target=True), logits)


@pytest.mark.parametrize("kind", sorted(SPACES))
def test_the_default_start_reads_large_random_values(kind: str) -> None:
    """What the zero start removes: far bins above the floor, read as thousands that vary from
    state to state."""
    net = _net(SPACES[kind], "uniform")
    with torch.no_grad():
        probs = torch.softmax(_critic_out(net), -1)
        values = net.bins.decode_probs(probs, "trimmed")
    assert values.abs().max() > 100.0
    assert values.std() > 10.0


def test_critic_start_is_checked() -> None:
    with pytest.raises(ValueError, match="critic_start must be one of \\('uniform', 'zero'\\)"):
        NetworkConfig(critic_start="ones")
