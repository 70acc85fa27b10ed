"""A two-hot critic learns a return *distribution*; how a value is read off it decides which
action the actor's filter prefers. Arm 0 pays M with probability 0.5, arm 1 pays M / 3 for sure:
read as the distribution's mean (`critic_decode="mean"`) arm 0 is worth more (M / 2 > M / 3); read
as symexp of the expected symlog (the DreamerV3 / AMAGO reference read-out) the sure arm wins at
large M, the risk aversion that kept amago2 from exploring the sparse dark room
(docs/results/barrier.md)."""

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from polyskill.agent.config import NetworkConfig
from polyskill.agent.network import AgentNetwork
from polyskill.agent.spaces import action_spec_from_space, obs_spec_from_space
from polyskill.trainer.losses import _pick

M, N = 1000.0, 64


def _trained_critic() -> AgentNetwork:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    cfg = NetworkConfig(d_model=32, num_layers=1, num_heads=2, d_ff=64, context_length=2,
                        encoder_hidden=32, head_hidden=32, num_critics=2, num_bins=32,
                        dropout=0.0, gammas=(0.0,))
    net = AgentNetwork(cfg, obs_spec_from_space(gym.spaces.Box(0, 1, (1,), np.float32)),
                       action_spec_from_space(gym.spaces.Discrete(2)))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(300):
        actions = torch.as_tensor(rng.integers(2, size=(N, 1)))
        paid = torch.as_tensor(rng.random((N, 1)) < 0.5)
        rewards = torch.where(actions == 0, paid * M, torch.full((N, 1), M / 3))  # (N, 1)
        h = _features(net, N)
        logits = _pick(net.critics(h), actions)  # (C, N, 1, G, NB)
        labels = net.bins.encode(rewards.float()[..., None])  # gamma 0: the target is r
        loss = -(labels * F.log_softmax(logits, -1)).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net


def _features(net: AgentNetwork, n: int) -> torch.Tensor:
    return net.features(
        {"obs": torch.zeros(n, 1, 1)}, torch.zeros(n, 1, dtype=torch.long), torch.zeros(n, 1),
        torch.ones(n, 1, dtype=torch.bool), torch.zeros(n, 1, dtype=torch.long),
    )  # (n, 1, D)


@pytest.fixture(scope="module")
def critic() -> AgentNetwork:
    return _trained_critic()


def _arm_values(net: AgentNetwork, decode: str) -> np.ndarray:
    net.bins.decode = decode
    with torch.no_grad():
        q = net.critic_values(net.critics(_features(net, 1)), all_actions=True)  # (C, 1, 1, 1, 2)
    return q.mean(0)[0, 0, 0].numpy()


@pytest.mark.parametrize("decode", ["mean", "trimmed"])
def test_the_mean_read_out_prefers_the_arm_with_the_higher_expected_return(critic, decode) -> None:
    q = _arm_values(critic, decode)
    assert q[0] > q[1], q
    assert q[0] == pytest.approx(M / 2, rel=0.15) and q[1] == pytest.approx(M / 3, rel=0.15)


def test_the_symlog_read_out_prefers_the_sure_arm(critic) -> None:
    q = _arm_values(critic, "symlog")
    assert q[1] > 2 * q[0], q  # the coin flip is read far below its mean M / 2
