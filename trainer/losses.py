"""The two objectives, side by side: AMAGO-2 ("independent") and the AMAGO-1-style baseline.

amago2:   critic = cross-entropy against two-hot labels of the TD target over fixed symlog bins;
          actor  = -1[A(s, a) > 0] * log pi(a | history), A = Q(s, a) - mean_k Q(s, a_k ~ pi).
          Neither depends on the reward scale (tests/unit/test_losses.py checks x1000).
baseline: critic = MSE on PopArt-normalised targets; actor = maximise the normalised Q of a
          reparameterised sample (expected Q for discrete) plus a small filtered-BC term.

Both: joint loss actor + critic_coef * critic; the actor term treats Q as a constant for the
critic (the critic is evaluated with detached features and parameters there), the shared
sequence model is trained by both. Padded steps (action_mask False) contribute nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.func import functional_call

from polyskill.agent.network import AgentNetwork

from .batch import TensorBatch


@dataclass
class LossConfig:
    critic_coef: float = 10.0
    reward_multiplier: float = 10.0
    """Fixed scale applied to rewards in the TD target (never adaptive)."""
    num_actor_samples: int = 3
    """K: actions sampled from the policy to estimate the value baseline of the advantage."""
    baseline_bc_coef: float = 0.1
    """Weight of the filtered-BC term in the baseline actor loss."""


def step_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x (..., B, T, G): mean over valid steps (mask (B, T)) and every other dimension."""
    m = mask.float()[..., None]  # (B, T, 1)
    m = m.expand(x.shape[-3:])
    return (x * m).sum() / (m.sum() * (x.numel() / m.numel())).clamp(min=1.0)


def filtered_bc_loss(
    logp: torch.Tensor, advantage: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """-1[A > 0] log pi(a): only the sign of the advantage matters, never its scale.

    logp, advantage (B, T, G); mask (B, T).
    """
    return step_mean(-(advantage > 0).float() * logp, mask)


def _per_gamma(actions: torch.Tensor, num_gammas: int, discrete: bool) -> torch.Tensor:
    """Buffer actions (B, T[, A]) -> (B, T, G[, A]) so every discount's head scores them."""
    if discrete:
        return actions.unsqueeze(-1).expand(*actions.shape, num_gammas)
    return actions.unsqueeze(-2).expand(*actions.shape[:-1], num_gammas, actions.shape[-1])


def _td_target(
    net: AgentNetwork,
    h_next: torch.Tensor,
    rewards: torch.Tensor,
    terminated: torch.Tensor,
    cfg: LossConfig,
) -> torch.Tensor:
    """r + gamma (1 - done) Q_target(s', a' ~ target actor), mean of 2 random target critics.

    h_next (B, T, D), rewards/terminated (B, T) -> (B, T, G) raw-scale targets.
    """
    a_next = net.target_actor(h_next).sample()  # (B, T, G[, A])
    out = net.target_critics(h_next, net.action_input(a_next))  # (C, B, T, G, o)
    pick = torch.randperm(out.shape[0], device=out.device)[:2]
    q_next = net.critic_values(out[pick]).mean(0)  # (B, T, G)
    not_done = 1.0 - terminated.float()[..., None]
    return cfg.reward_multiplier * rewards[..., None] + net.gammas * not_done * q_next


def _critic_values_frozen(
    net: AgentNetwork, h: torch.Tensor, action_input: torch.Tensor
) -> torch.Tensor:
    """Critic outputs with parameters detached: gradients reach the action, not the critic."""
    params = {k: v.detach() for k, v in net.critics.named_parameters()}
    return functional_call(net.critics, params, (h.detach(), action_input))


def compute_loss(
    net: AgentNetwork, b: TensorBatch, cfg: LossConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    h = net.features(b.obs, b.prev_actions, b.prev_rewards, b.new_episode, b.positions)  # (B, L, D)
    h_t, h_next = h[:, :-1], h[:, 1:]  # (B, T, D), T = L - 1
    a_t, mask = b.actions[:, :-1], b.action_mask[:, :-1]  # (B, T[, A]), (B, T)
    G, discrete = len(net.cfg.gammas), net.action_spec.kind == "discrete"
    with torch.no_grad():
        target = _td_target(net, h_next, b.rewards[:, :-1], b.terminated[:, :-1], cfg)  # (B, T, G)
    critic_out = net.critics(h_t, net.action_input(a_t).unsqueeze(-2))  # (C, B, T, G, o)
    dist = net.actor(h_t)  # batch shape (B, T, G)
    logp = dist.log_prob(_per_gamma(a_t, G, discrete))  # (B, T, G)

    with torch.no_grad():
        q_buffer = net.critic_values(critic_out).mean(0)  # (B, T, G)
        q_policy = torch.stack(
            [
                net.critic_values(net.critics(h_t, net.action_input(dist.sample()))).mean(0)
                for _ in range(cfg.num_actor_samples)
            ]
        ).mean(0)  # (B, T, G)
        advantage = q_buffer - q_policy
        keep = (advantage > 0).float()  # for metrics; the loss recomputes it

    if net.cfg.agent == "amago2":
        labels = net.bins.encode(target)  # (B, T, G, NB)
        critic_loss = step_mean(-(labels * F.log_softmax(critic_out, -1)).sum(-1), mask)
        actor_loss = filtered_bc_loss(logp, advantage, mask)
    else:
        valid = mask.reshape(-1)
        net.popart.update(target.reshape(-1, G)[valid], [net.critics.out, net.target_critics.out])
        critic_out = net.critics(h_t, net.action_input(a_t).unsqueeze(-2))  # re-read after rescale
        critic_loss = step_mean((critic_out[..., 0] - net.popart.normalize(target)) ** 2, mask)
        actor_loss = step_mean(-_baseline_q(net, dist, h_t, discrete), mask)
        actor_loss = actor_loss + cfg.baseline_bc_coef * filtered_bc_loss(logp, advantage, mask)

    loss = actor_loss + cfg.critic_coef * critic_loss
    metrics = {
        "losses/actor": actor_loss.item(),
        "losses/critic": critic_loss.item(),
        "losses/total": loss.item(),
        "values/q_mean": step_mean(q_buffer, mask).item(),
        "values/filter_rate": step_mean(keep, mask).item(),
    }
    return loss, metrics


def _baseline_q(net: AgentNetwork, dist, h_t: torch.Tensor, discrete: bool) -> torch.Tensor:
    """Normalised Q of the policy, differentiable w.r.t. the actor only. -> (B, T, G)."""
    if discrete:
        n = net.action_spec.n
        eye = torch.eye(n, device=h_t.device)
        q_all = torch.stack(
            [
                _critic_values_frozen(net, h_t, eye[a].expand(*h_t.shape[:-1], 1, n))[..., 0].mean(
                    0
                )
                for a in range(n)
            ],
            dim=-1,
        )  # (B, T, G, n)
        return (dist.probs * q_all).sum(-1)
    a = dist.rsample()  # (B, T, G, A)
    return _critic_values_frozen(net, h_t, net.action_input(a))[..., 0].mean(0)
