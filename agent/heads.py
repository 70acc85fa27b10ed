"""Actor and critic heads over the trajectory features (one output per discount, "multi-gamma").

Actor: a categorical (discrete) or tanh-Gaussian (continuous) distribution per discount;
the policy acts with the last discount's head.
Critic: an ensemble of C MLPs over (features, action), evaluated together with batched weights;
each outputs per discount either `num_bins` two-hot logits (amago2) or one scalar (baseline).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import NetworkConfig
from .spaces import ActionSpec


def mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden),
        nn.LayerNorm(hidden),
        nn.LeakyReLU(),
        nn.Linear(hidden, hidden),
        nn.LayerNorm(hidden),
        nn.LeakyReLU(),
        nn.Linear(hidden, out_dim),
    )


class Categorical:
    """Per-discount categorical with clipped probabilities. logits (..., G, A)."""

    def __init__(self, logits: torch.Tensor, prob_min: float, prob_max: float) -> None:
        probs = torch.softmax(logits, -1).clamp(prob_min, prob_max)
        self.probs = probs / probs.sum(-1, keepdim=True)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:  # (..., G) int
        flat = self.probs.reshape(-1, self.probs.shape[-1])
        return torch.multinomial(flat, 1, generator=generator).reshape(self.probs.shape[:-1])

    def mode(self) -> torch.Tensor:
        return self.probs.argmax(-1)

    def log_prob(self, action: torch.Tensor) -> torch.Tensor:  # action (..., G) int -> (..., G)
        return self.probs.gather(-1, action.long().unsqueeze(-1)).squeeze(-1).log()


BC_ACTION_LIMIT = 0.99
"""log_prob reads actions beyond +-0.99 of the bounds' half-range as +-0.99 (pre-tanh +-2.65, as
the AMAGO reference code). Exploration noise clipped at the bounds puts ~20 % of a continuous
replay's components exactly on them; read at 0.999 (pre-tanh 3.8) those few kept pulling the
filtered BC's mean outward after the other actions had turned inward, and widened its std: the
Meta-World actor drifted to the bounds (docs/results/barrier.md, "...arm goes to a corner")."""


class TanhGaussian:
    """Per-discount tanh-squashed Gaussian scaled to the action bounds. mean/log_std (..., G, A)."""

    def __init__(
        self, mean: torch.Tensor, log_std: torch.Tensor, low: torch.Tensor, high: torch.Tensor
    ):
        self.mean, self.std = mean, log_std.exp()
        self.low, self.high = low, high

    def _squash(self, u: torch.Tensor) -> torch.Tensor:
        return self.low + (torch.tanh(u) + 1.0) * 0.5 * (self.high - self.low)

    def rsample(self, generator: torch.Generator | None = None) -> torch.Tensor:  # (..., G, A)
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device)
        return self._squash(self.mean + self.std * eps)

    sample = rsample

    def mode(self) -> torch.Tensor:
        return self._squash(self.mean)

    def log_prob(self, action: torch.Tensor) -> torch.Tensor:  # (..., G, A) -> (..., G)
        y = 2.0 * (action - self.low) / (self.high - self.low) - 1.0
        y = y.clamp(-BC_ACTION_LIMIT, BC_ACTION_LIMIT)
        u = torch.atanh(y)
        normal = (
            -0.5 * ((u - self.mean) / self.std) ** 2 - self.std.log() - 0.5 * math.log(2 * math.pi)
        )
        return (normal - torch.log1p(-y.pow(2) + 1e-6)).sum(-1)


class Actor(nn.Module):
    def __init__(self, cfg: NetworkConfig, action_spec: ActionSpec) -> None:
        super().__init__()
        self.cfg, self.spec = cfg, action_spec
        self.num_gammas = len(cfg.gammas)
        per_gamma = action_spec.n if action_spec.kind == "discrete" else 2 * action_spec.dim
        self.net = mlp(cfg.d_model, cfg.head_hidden, self.num_gammas * per_gamma)
        if action_spec.kind == "continuous":
            self.register_buffer("low", torch.tensor(action_spec.low), persistent=False)
            self.register_buffer("high", torch.tensor(action_spec.high), persistent=False)

    def forward(self, h: torch.Tensor) -> Categorical | TanhGaussian:
        """h (..., D) -> distribution with batch shape (..., G)."""
        out = self.net(h).reshape(*h.shape[:-1], self.num_gammas, -1)  # (..., G, A or 2A)
        if self.spec.kind == "discrete":
            return Categorical(out, self.cfg.prob_min, self.cfg.prob_max)
        mean, log_std = out.chunk(2, dim=-1)
        log_std = log_std.clamp(self.cfg.log_std_min, self.cfg.log_std_max)
        return TanhGaussian(mean, log_std, self.low, self.high)


class EnsembleLinear(nn.Module):
    """C independent linear layers applied at once: (C, N, in) -> (C, N, out)."""

    def __init__(self, num: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_dim)
        self.weight = nn.Parameter(torch.empty(num, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(num, 1, out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
        """x (C', N, in) -> (C', N, out); `ids` selects C' of the C layers (default: all)."""
        if ids is None:
            return torch.baddbmm(self.bias, x, self.weight)
        return torch.baddbmm(self.bias[ids], x, self.weight[ids])


class CriticEnsemble(nn.Module):
    """C critics evaluated together; each outputs `o` numbers per discount (bins or a scalar).

    Discrete actions: the critic reads the features only and scores every action at once,
    (C, ..., G, A, o), so the policy's expected value is exact and costs one pass.
    Continuous actions: the critic reads (features, action) and returns (C, ..., G, o); with K = 1
    action it is scored under every discount, with K = G actions (one per discount's actor) each
    is scored under its own discount only (per-discount output weights, no G x G waste).
    """

    def __init__(self, cfg: NetworkConfig, action_spec: ActionSpec) -> None:
        super().__init__()
        self.discrete = action_spec.kind == "discrete"
        self.num_critics, self.num_gammas = cfg.num_critics, len(cfg.gammas)
        self.out_per_gamma = cfg.num_bins if cfg.agent == "amago2" else 1
        self.num_actions = action_spec.n if self.discrete else 1
        C, hid = cfg.num_critics, cfg.head_hidden
        in_dim = cfg.d_model + (0 if self.discrete else action_spec.dim)
        self.l1 = EnsembleLinear(C, in_dim, hid)
        self.n1 = nn.LayerNorm(hid)
        self.l2 = EnsembleLinear(C, hid, hid)
        self.n2 = nn.LayerNorm(hid)
        self.out = EnsembleLinear(C, hid, self.num_gammas * self.num_actions * self.out_per_gamma)

    @torch.no_grad()
    def start_at(self, logits: torch.Tensor) -> None:
        """Centre every critic's output on `logits` (o,) for every discount and action: the
        output biases are set to them; the weights keep their random init (zeroing them too
        left a critic-only test at chance after 3,000 updates: docs/results/barrier.md)."""
        assert logits.shape == (self.out_per_gamma,), logits.shape
        per_output = logits.repeat(self.num_gammas * self.num_actions)  # (G*A*o,)
        self.out.bias.copy_(per_output.expand_as(self.out.bias))

    def _hidden(self, x: torch.Tensor, ids: torch.Tensor | None) -> torch.Tensor:
        """(N, in) -> (C', N, hid) for the selected critics."""
        x = x.unsqueeze(0).expand(self.num_critics if ids is None else len(ids), -1, -1)
        x = F.leaky_relu(self.n1(self.l1(x, ids)))
        return F.leaky_relu(self.n2(self.l2(x, ids)))

    def forward(
        self,
        h: torch.Tensor,
        action_input: torch.Tensor | None = None,
        critic_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Discrete: h (..., D) -> (C, ..., G, A, o).
        Continuous: h (..., D), action_input (..., K, dim) with K in {1, G} -> (C, ..., G, o).
        `critic_ids` evaluates only those critics (C = len(critic_ids)): TD targets need 2."""
        ids = critic_ids
        C = self.num_critics if ids is None else len(ids)
        G, o, lead = self.num_gammas, self.out_per_gamma, h.shape[:-1]
        if self.discrete:
            y = self.out(self._hidden(h.reshape(-1, h.shape[-1]), ids), ids)  # (C, N, G*A*o)
            return y.reshape(C, *lead, G, self.num_actions, o)
        K = action_input.shape[-2]
        assert K in (1, G), f"action_input must hold 1 or {G} actions per step, got {K}"
        x = torch.cat([h.unsqueeze(-2).expand(*lead, K, h.shape[-1]), action_input], dim=-1)
        z = self._hidden(x.reshape(-1, x.shape[-1]), ids)
        z = z.reshape(C, -1, K, z.shape[-1])  # (C, N, K, hid)
        w, b = (
            (self.out.weight, self.out.bias)
            if ids is None
            else (self.out.weight[ids], self.out.bias[ids])
        )
        w, b = w.reshape(C, -1, G, o), b.reshape(C, 1, G, o)  # (C, hid, G, o), (C, 1, G, o)
        if K == 1:
            y = torch.einsum("cnh,chgo->cngo", z[:, :, 0], w) + b  # (C, N, G, o)
        else:
            y = torch.einsum("cngh,chgo->cngo", z, w) + b
        return y.reshape(C, *lead, G, o)
