"""Loss properties that must hold: scale invariance of the actor filter, masking of padded steps."""

from dataclasses import fields

import gymnasium as gym
import numpy as np
import pytest
import torch

from polyskill.agent.config import NetworkConfig
from polyskill.agent.network import AgentNetwork
from polyskill.agent.spaces import action_spec_from_space, obs_spec_from_space
from polyskill.agent.two_hot import TwoHotBins
from polyskill.trainer.batch import TensorBatch
from polyskill.trainer.losses import (
    LossConfig,
    _n_step,
    _td_target,
    compute_loss,
    filtered_bc_loss,
    step_weights,
)


def tiny_net(agent: str, action_space: gym.Space) -> AgentNetwork:
    torch.manual_seed(0)
    cfg = NetworkConfig(
        agent=agent,
        d_model=16,
        num_layers=1,
        num_heads=2,
        d_ff=32,
        dropout=0.0,
        context_length=8,
        encoder_hidden=16,
        head_hidden=16,
        num_critics=2,
        gammas=(0.9, 0.99),
        num_bins=16,
    )
    obs_space = gym.spaces.Box(-1, 1, (3,), np.float32)
    return AgentNetwork(cfg, obs_spec_from_space(obs_space), action_spec_from_space(action_space))


def random_batch(net: AgentNetwork, B: int = 4, L: int = 8, valid: int = 5) -> TensorBatch:
    g = torch.Generator().manual_seed(1)
    spec = net.action_spec
    if spec.kind == "discrete":
        actions = torch.randint(0, spec.n, (B, L), generator=g)
    else:
        actions = torch.rand(B, L, spec.dim, generator=g) * 2 - 1
    prev = torch.roll(actions, 1, dims=1)
    token_mask = torch.arange(L)[None].expand(B, L) < valid
    return TensorBatch(
        obs={"obs": torch.randn(B, L, 3, generator=g)},
        prev_actions=prev,
        prev_rewards=torch.randn(B, L, generator=g),
        new_episode=torch.zeros(B, L, dtype=torch.bool),
        positions=torch.arange(L).expand(B, L),
        actions=actions,
        rewards=torch.randn(B, L, generator=g),
        terminated=torch.zeros(B, L, dtype=torch.bool),
        token_mask=token_mask,
        action_mask=torch.arange(L)[None].expand(B, L) < valid - 1,
    )


def test_filter_actor_loss_is_unchanged_when_rewards_and_values_scale_by_1000() -> None:
    g = torch.Generator().manual_seed(0)
    logp = -torch.rand(4, 6, 3, generator=g)
    q_buffer, q_policy = torch.randn(4, 6, 3, generator=g), torch.randn(4, 6, 3, generator=g)
    mask = torch.rand(4, 6, generator=g) > 0.3
    base = filtered_bc_loss(logp, q_buffer - q_policy, mask)
    scaled = filtered_bc_loss(logp, 1000 * q_buffer - 1000 * q_policy, mask)
    assert base.item() == scaled.item()
    assert base.item() > 0


@pytest.mark.parametrize("agent", ["amago2", "baseline"])
@pytest.mark.parametrize("space", [gym.spaces.Discrete(3), gym.spaces.Box(-2, 2, (2,), np.float32)])
@pytest.mark.parametrize("n_step", [1, 3])
@pytest.mark.parametrize("td_target", ["scalar", "distributional"])
@pytest.mark.parametrize("weighting", ["step", "window"])
def test_padded_steps_contribute_nothing(agent: str, space: gym.Space, n_step: int,
                                         td_target: str, weighting: str) -> None:
    net = tiny_net(agent, space)
    batch = random_batch(net)
    cfg = LossConfig(n_step=n_step, td_target=td_target, weighting=weighting)
    torch.manual_seed(5)
    loss, _ = compute_loss(net, batch, cfg)
    grads = torch.autograd.grad(
        loss, [p for p in net.parameters() if p.requires_grad], allow_unused=True
    )
    # scribble over everything after the valid steps: observations, rewards, actions
    pad = ~batch.token_mask
    batch.obs["obs"][pad] = 1e3
    batch.rewards[pad] = -1e4
    batch.prev_rewards[pad] = 1e4
    net2 = tiny_net(agent, space)
    torch.manual_seed(5)
    loss2, _ = compute_loss(net2, batch, cfg)
    grads2 = torch.autograd.grad(
        loss2, [p for p in net2.parameters() if p.requires_grad], allow_unused=True
    )
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss2, loss)
    for a, b in zip(grads, grads2, strict=True):
        if a is not None:
            torch.testing.assert_close(a, b)


def _rows(batch: TensorBatch, i: int) -> TensorBatch:
    return TensorBatch(**{
        f.name: ({k: v[i:i + 1] for k, v in getattr(batch, f.name).items()}
                 if f.name == "obs" else getattr(batch, f.name)[i:i + 1])
        for f in fields(TensorBatch)
    })


def test_window_weighting_gives_every_window_the_same_share() -> None:
    """With weighting="window" a batch's loss is the mean of its windows' losses, however many
    valid steps each holds (a bandit's 2-step window counts as much as a 7-step one); with "step"
    it is their mean weighted by valid steps. amago2 (the baseline's PopArt moves with every
    call), discrete actions and 2 critics: no sampling."""
    net = tiny_net("amago2", gym.spaces.Discrete(3))
    batch = random_batch(net, B=3, L=8, valid=8)
    valid = torch.tensor([3, 8, 6])  # tokens per window; steps with a next token: 2, 7, 5
    batch.token_mask = torch.arange(8)[None] < valid[:, None]
    batch.action_mask = torch.arange(8)[None] < valid[:, None] - 1
    per_window = torch.stack([compute_loss(net, _rows(batch, i), LossConfig())[0]
                              for i in range(3)]).detach()
    by_window, _ = compute_loss(net, batch, LossConfig(weighting="window"))
    by_step, _ = compute_loss(net, batch, LossConfig(weighting="step"))
    steps = (valid - 1).float()
    torch.testing.assert_close(by_window.detach(), per_window.mean())
    torch.testing.assert_close(by_step.detach(), (per_window * steps).sum() / steps.sum())
    assert not torch.isclose(by_window, by_step)


def test_step_weights_sum_to_one_per_window_and_ignore_empty_windows() -> None:
    mask = torch.tensor([[True, True, False, False], [True] * 4, [False] * 4])
    w = step_weights(mask, "window")
    assert w.sum(1).tolist() == [1.0, 1.0, 0.0]
    assert w[0, :2].tolist() == [0.5, 0.5] and w[1].tolist() == [0.25] * 4
    assert torch.equal(step_weights(mask, "step"), mask.float())
    with pytest.raises(ValueError, match="weighting must be"):
        LossConfig(weighting="task").validate()


def test_amago2_critic_loss_scale_is_comparable_across_reward_scales() -> None:
    """Two-hot cross-entropy stays O(1) when rewards grow x1000 (regression MSE would grow 1e6x)."""
    net = tiny_net("amago2", gym.spaces.Discrete(3))
    batch = random_batch(net)
    torch.manual_seed(0)
    _, small = compute_loss(net, batch, LossConfig())
    batch.rewards *= 1000
    torch.manual_seed(0)
    _, big = compute_loss(net, batch, LossConfig())
    assert big["losses/critic"] < 5 * small["losses/critic"]


def test_n_step_targets_stop_at_termination_and_at_the_window_end() -> None:
    """r = 1, 2, 3, 4; Q(s_t+1) = 10, 20, 30, 40; gamma 0.5; the episode terminates after t = 1."""
    reward = torch.tensor([1.0, 2, 3, 4])[None, :, None]  # (B=1, T=4, 1)
    discount = 0.5 * torch.tensor([1.0, 0, 1, 1])[None, :, None]  # gamma (1 - terminated)
    q_next = torch.tensor([10.0, 20, 30, 40])[None, :, None]
    has_next = torch.ones(1, 4, dtype=torch.bool)
    assert _n_step(reward, discount, has_next, 1).of(q_next).flatten().tolist() == [6, 2, 18, 24]
    # t=0: 1 + 0.5 * 2 (the episode ends after t=1); t=2: 3 + 0.5 * 24; t=3: the window ends
    assert _n_step(reward, discount, has_next, 3).of(q_next).flatten().tolist() == [2, 2, 15, 24]
    has_next[0, 3] = False  # step 3 is padding: t=2 keeps its one-step target
    assert _n_step(reward, discount, has_next, 3).of(q_next).flatten().tolist() == [2, 2, 18, 24]


def test_distributional_targets_shift_every_next_bin_and_stop_at_termination() -> None:
    """A next-state distribution with all its mass on one bin z gives the two-hot label of
    r + gamma z, the scalar target; a terminated step gives r's label whatever comes next."""
    bins = TwoHotBins(32).double()
    reward = torch.tensor([1.0, 2, 3], dtype=torch.float64)[None, :, None]  # (1, T=3, 1)
    discount = 0.9 * torch.tensor([1.0, 0, 1], dtype=torch.float64)[None, :, None]
    td = _n_step(reward, discount, torch.ones(1, 3, dtype=torch.bool), 1)
    j = torch.tensor([20, 25, 28])  # the next state's bin, per step
    point = torch.nn.functional.one_hot(j, 32).double()[None, :, None]  # (1, 3, G=1, 32)
    z = bins.values[j][None, :, None]  # (1, 3, 1)
    torch.testing.assert_close(td.labels(bins, point), bins.encode(td.of(z)))
    torch.testing.assert_close(td.labels(bins, point)[0, 1, 0], bins.encode(reward[0, 1, 0]))
    # a spread next distribution: the label is the mixture of the shifted bins' labels
    spread = torch.softmax(torch.randn(1, 3, 1, 32, dtype=torch.float64), -1)
    mixture = (spread[..., None] * bins.encode(td.offset[..., None] + td.scale[..., None]
                                               * bins.values)).sum(-2)
    torch.testing.assert_close(td.labels(bins, spread), mixture)


def test_trimmed_targets_drop_the_next_states_noise_floor() -> None:
    """`td_target="trimmed"` projects only the next-state bins above the read-out's noise floor:
    a near-certain next value with the softmax's floor on every other bin gives that value's
    label alone, where the plain distributional label keeps mass on the far bins."""
    net = tiny_net("amago2", gym.spaces.Discrete(3))
    with torch.no_grad():  # every critic and action: 0 at ~98 %, the rest spread over the bins
        net.target_critics.start_at(net.bins.start_logits(0.0))
        net.target_critics.out.weight.zero_()
    b = random_batch(net)
    kept = net.bins.trim(torch.softmax(net.bins.start_logits(0.0), -1))
    assert kept.sum().item() == pytest.approx(1.0) and (kept > 0).sum() <= 2

    def labels(td_target: str) -> torch.Tensor:
        h = net.features(b.obs, b.prev_actions, b.prev_rewards, b.new_episode, b.positions)
        cfg = LossConfig(td_target=td_target)
        with torch.no_grad():
            _, out = _td_target(net, h[:, 1:], torch.zeros_like(b.rewards[:, :-1]),
                                b.terminated[:, :-1], b.action_mask[:, :-1], cfg)
        return out  # (B, T, G, NB)

    zero = net.bins.encode(torch.tensor(0.0))  # rewards 0: the label of 0 + gamma * 0
    far = net.bins.values.abs() > 1.0
    plain, trimmed = labels("distributional"), labels("trimmed")
    assert plain[..., far].sum(-1).min() > 1e-3  # the floor, carried to the next state
    torch.testing.assert_close(trimmed, zero.expand_as(trimmed).to(trimmed.dtype))
