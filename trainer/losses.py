"""The two objectives, side by side: AMAGO-2 ("independent") and the AMAGO-1-style baseline.

amago2:   critic = cross-entropy against the TD target's distribution over fixed symlog bins
          (r + gamma z projected for every bin z of the next state's distribution);
          actor  = -1[A(s, a) > 0] * log pi(a | history), A = Q(s, a) - V(s), V(s) = E_pi Q(s, .).
          Neither depends on the reward scale (tests/unit/test_losses.py checks x1000).
baseline: critic = MSE on PopArt-normalised targets; actor = maximise the normalised Q of the
          policy (exact expectation for discrete actions, a reparameterised sample for continuous)
          plus a small filtered-BC term.

V(s): exact over all actions for discrete policies (the critic scores every action in one pass);
the mean over K sampled actions for continuous ones. TD targets: the target actor's action at s'
(expected for discrete, sampled for continuous), scored by 2 random target critics (mean);
one-step by default, n-step within the window with `LossConfig.n_step`.
Both: one joint loss actor + critic_coef * critic. The actor term treats Q as a constant (no
gradient reaches the critic from it); the shared sequence model is trained by both. Padded steps
(action_mask False) contribute nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.func import functional_call

from polyskill.agent.heads import Categorical
from polyskill.agent.network import AgentNetwork
from polyskill.agent.two_hot import TwoHotBins

from .batch import TensorBatch


@dataclass
class LossConfig:
    critic_coef: float = 10.0
    reward_multiplier: float = 10.0
    """Fixed scale applied to rewards in the TD target (never adaptive)."""
    num_actor_samples: int = 3
    """K: policy samples that estimate V(s) for continuous actions (discrete: exact)."""
    baseline_bc_coef: float = 0.1
    """Weight of the filtered-BC term in the baseline actor loss."""
    n_step: int = 1
    """TD targets over up to n steps of the window: r_t + g r_t+1 + ... + g^n Q(s_t+n), cut at an
    episode's termination and at the window's end. 1 is DESIGN.md's one-step target. Larger n
    carries a return back n steps per update (short runs learn long horizons sooner) at the cost
    of a bias towards the behaviour policy's (exploring) actions."""
    weighting: str = "step"
    """How the losses average over a batch. "step": every valid step counts the same (AMAGO's),
    so a task whose windows hold few steps (a bandit's 8-step trials next to a dark room's full
    64-step windows: 13 % of `scales`' valid steps for half its windows) gets a small share of
    the gradient. "window": each window's mean over its valid steps, then the mean over windows,
    so each task's share is the share of its sampled trajectories. On `scales` (b) "window"
    lifted the bandit's worst seed and cost the dark room more, in every seed: the two tasks
    share the same updates either way (docs/results/barrier.md)."""
    td_target: str = "distributional"
    """amago2's critic labels. "distributional": r + gamma z for every bin z of the target critic's
    next-state distribution, projected onto the bins (C51's projection, in symlog space): no value
    is decoded to bootstrap from. "scalar": the two-hot label of r + gamma V(s'), V decoded from the
    target critic (DESIGN.md's, and runs stored before this setting existed). Decoding reads a
    spread distribution low, the more so the larger the values, and scalar targets feed that back
    into the critic: at values in the thousands it stopped learning which bandit arm pays
    (docs/results/barrier.md, tests/unit/test_td_target_scale.py). "trimmed": distributional,
    but the next-state distribution loses its bins below the read-out's noise floor before the
    projection (`TwoHotBins.trim`), so the softmax's floor on far bins is not carried from state
    to state: on the 60-step `point` task distributional values read -3,021 and +3,426 where the
    return-to-go was about -300 and ranked moves at random, trimmed ones stayed at -57 to -177 and
    ranked them (docs/results/barrier.md, "point"). Not the default: on `point`, bins fitted to
    the task's returns (the preset's) removed the drift instead, and trimming then cut real
    spread of the return (-40.1 per trial against -24.4 over four seeds)."""

    def validate(self) -> None:
        if self.n_step < 1:
            raise ValueError(f"n_step must be >= 1, got {self.n_step}")
        if self.td_target not in ("scalar", "distributional", "trimmed"):
            raise ValueError(
                f"td_target must be 'scalar', 'distributional' or 'trimmed', got {self.td_target!r}"
            )
        if self.weighting not in ("step", "window"):
            raise ValueError(f"weighting must be 'step' or 'window', got {self.weighting!r}")
        if self.critic_coef < 0 or self.reward_multiplier <= 0 or self.num_actor_samples < 1:
            raise ValueError("critic_coef must be >= 0, reward_multiplier > 0, "
                             "num_actor_samples >= 1")


def step_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x (..., B, T, G): mean over valid steps (mask (B, T), bool or per-step weights) and every
    other dimension."""
    m = mask.float()[..., None].expand(x.shape[-3:])  # (B, T, G)
    return (x * m).sum() / (m.sum() * (x.numel() / m.numel())).clamp(min=1.0)


def step_weights(mask: torch.Tensor, weighting: str) -> torch.Tensor:
    """mask (B, T) bool -> (B, T) float weights for step_mean (LossConfig.weighting)."""
    w = mask.float()
    if weighting == "window":
        w = w / w.sum(1, keepdim=True).clamp(min=1.0)  # each non-empty window sums to 1
    return w


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


def _pick(out: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Discrete critic outputs (C, B, T, G, A, o), actions (B, T) -> (C, B, T, G, o)."""
    idx = actions.long()[None, :, :, None, None, None]  # (1, B, T, 1, 1, 1)
    idx = idx.expand(*out.shape[:4], 1, out.shape[-1])
    return out.gather(4, idx).squeeze(4)


@dataclass
class TDTarget:
    """n-step TD targets as an affine map of a bootstrap step's next-state value:
    G_t = offset_t + scale_t * Q(s_(idx_t + 1)), all (B, T, G) (idx: int, into the window)."""

    offset: torch.Tensor
    scale: torch.Tensor
    idx: torch.Tensor

    def of(self, next_values: torch.Tensor) -> torch.Tensor:
        """Scalar targets from next-state values (B, T, G) -> (B, T, G)."""
        return self.offset + self.scale * next_values.gather(1, self.idx)

    def labels(self, bins: TwoHotBins, next_probs: torch.Tensor) -> torch.Tensor:
        """Distributional labels from next-state bin probabilities (B, T, G, NB) -> (B, T, G, NB):
        offset + scale * z for every bin z, projected with that bin's probability."""
        probs = next_probs.gather(1, self.idx[..., None].expand_as(next_probs))
        y = self.offset[..., None] + self.scale[..., None] * bins.values  # (B, T, G, NB)
        return bins.project(y, probs)


def _td_target(
    net: AgentNetwork,
    h_next: torch.Tensor,
    rewards: torch.Tensor,
    terminated: torch.Tensor,
    has_next: torch.Tensor,
    cfg: LossConfig,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """r + gamma (1 - done) Q_target(s', a') (n-step: `_n_step`); (B, T) rewards, terminated and
    has_next (transition t exists: the action mask) -> (the raw-scale scalar targets (B, T, G),
    None), or for amago2 with distributional targets (None, the critic's labels (B, T, G, NB)):
    no value is decoded then."""
    pick = torch.randperm(net.cfg.num_critics, device=h_next.device)[:2]
    dist = net.target_actor(h_next)  # batch (B, T, G)
    discrete = isinstance(dist, Categorical)
    if discrete:
        out = net.target_critics(h_next, critic_ids=pick)  # (2, B, T, G, A, o)
    else:
        a_next = net.action_input(dist.sample())  # (B, T, G, A)
        out = net.target_critics(h_next, a_next, pick)  # (2, B, T, G, o)
    not_done = 1.0 - terminated.float()[..., None]
    reward = cfg.reward_multiplier * rewards[..., None]  # (B, T, 1)
    td = _n_step(reward, not_done * net.gammas, has_next, cfg.n_step)
    if net.cfg.agent == "amago2" and cfg.td_target != "scalar":
        probs = torch.softmax(out, -1).mean(0)  # (B, T, G[, A], NB)
        if discrete:
            probs = (dist.probs[..., None] * probs).sum(-2)  # the target policy's mixture
        if cfg.td_target == "trimmed":
            probs = net.bins.trim(probs)
        return None, td.labels(net.bins, probs)
    if discrete:
        q_next = (dist.probs * net.critic_values(out, all_actions=True).mean(0)).sum(-1)
    else:
        q_next = net.critic_values(out).mean(0)  # (B, T, G)
    return td.of(q_next), None


def _n_step(reward: torch.Tensor, discount: torch.Tensor, has_next: torch.Tensor,
            n: int) -> TDTarget:
    """G^m_t = r_t + discount_t G^(m-1)_t+1 where transition t+1 is in the window, else the
    one-step target G^1_t = r_t + discount_t Q(s_t+1); returns G^n in affine form.
    reward (B, T, 1), discount_t = gamma (1 - terminated_t) (B, T, G)."""
    B, T, G = discount.shape
    offset, scale = reward.expand(B, T, G), discount
    idx = torch.arange(T, device=reward.device)[None, :, None].expand(B, T, G)
    base = (offset, scale, idx)
    follow = has_next[:, 1:, None]  # (B, T-1, 1): transition t+1 exists
    for _ in range(n - 1):
        longer = (
            reward[:, :-1] + discount[:, :-1] * offset[:, 1:],
            discount[:, :-1] * scale[:, 1:],
            idx[:, 1:],
        )  # (B, T-1, G) each
        offset, scale, idx = (
            torch.cat([torch.where(follow, x, b[:, :-1]), b[:, -1:]], 1)
            for x, b in zip(longer, base, strict=True)
        )
    return TDTarget(offset, scale, idx)


def _frozen_critics(net: AgentNetwork, h: torch.Tensor, action_input: torch.Tensor) -> torch.Tensor:
    """Continuous critic outputs with parameters and features detached: gradient reaches the
    action (and so the actor) only."""
    params = {k: v.detach() for k, v in net.critics.named_parameters()}
    return functional_call(net.critics, params, (h.detach(), action_input))


def sampled_value(net: AgentNetwork, h_t: torch.Tensor, dist, k: int) -> torch.Tensor:
    """V(s) = E_pi Q(s, a) for continuous actions: the critics' mean over k policy samples.

    h_t (B, T, D); dist with batch (B, T, G) -> (B, T, G).
    """
    samples = [dist.sample() for _ in range(k)]
    return torch.stack(
        [net.critic_values(net.critics(h_t, net.action_input(a))).mean(0) for a in samples]
    ).mean(0)


def compute_loss(
    net: AgentNetwork, b: TensorBatch, cfg: LossConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    h = net.features(b.obs, b.prev_actions, b.prev_rewards, b.new_episode, b.positions)
    h_t, h_next = h[:, :-1], h[:, 1:]  # (B, T, D), T = L - 1
    a_t, mask = b.actions[:, :-1], b.action_mask[:, :-1]  # (B, T[, A]), (B, T)
    G, discrete = len(net.cfg.gammas), net.action_spec.kind == "discrete"
    with torch.no_grad():
        target, labels = _td_target(
            net, h_next, b.rewards[:, :-1], b.terminated[:, :-1], mask, cfg
        )
    dist = net.actor(h_t)  # batch (B, T, G)
    logp = dist.log_prob(_per_gamma(a_t, G, discrete))  # (B, T, G)

    if discrete:
        all_out = net.critics(h_t)  # (C, B, T, G, A, o)
        critic_out = _pick(all_out, a_t)  # (C, B, T, G, o)
        with torch.no_grad():
            q_all = net.critic_values(all_out, all_actions=True).mean(0)  # (B, T, G, A)
            q_buffer = q_all.gather(-1, a_t.long()[..., None, None].expand(*q_all.shape[:3], 1))[
                ..., 0
            ]
            v = (dist.probs * q_all).sum(-1)  # (B, T, G)
    else:
        critic_out = net.critics(h_t, net.action_input(a_t).unsqueeze(-2))  # (C, B, T, G, o)
        with torch.no_grad():
            q_buffer = net.critic_values(critic_out).mean(0)  # (B, T, G)
            v = sampled_value(net, h_t, dist, cfg.num_actor_samples)
    advantage = q_buffer - v  # (B, T, G), no gradient
    w = step_weights(mask, cfg.weighting)  # (B, T)

    if net.cfg.agent == "amago2":
        if labels is None:
            labels = net.bins.encode(target)  # (B, T, G, NB)
        critic_loss = step_mean(-(labels * F.log_softmax(critic_out, -1)).sum(-1), w)
        actor_loss = filtered_bc_loss(logp, advantage, w)
    else:
        net.popart.update(
            target.reshape(-1, G)[mask.reshape(-1)], [net.critics.out, net.target_critics.out]
        )
        if discrete:  # re-read after PopArt rescaled the output layer
            all_out = net.critics(h_t)
            critic_out = _pick(all_out, a_t)
            q_pi = (dist.probs * all_out.detach()[..., 0].mean(0)).sum(-1)  # (B, T, G)
        else:
            critic_out = net.critics(h_t, net.action_input(a_t).unsqueeze(-2))
            q_pi = _frozen_critics(net, h_t, net.action_input(dist.rsample()))[..., 0].mean(0)
        critic_loss = step_mean((critic_out[..., 0] - net.popart.normalize(target)) ** 2, w)
        actor_loss = step_mean(-q_pi, w)
        actor_loss = actor_loss + cfg.baseline_bc_coef * filtered_bc_loss(logp, advantage, w)

    loss = actor_loss + cfg.critic_coef * critic_loss
    metrics = {
        "losses/actor": actor_loss.item(),
        "losses/critic": critic_loss.item(),
        "losses/total": loss.item(),
        "values/q_mean": step_mean(q_buffer, mask).item(),
        "values/filter_rate": step_mean((advantage > 0).float(), mask).item(),
    }
    return loss, metrics
