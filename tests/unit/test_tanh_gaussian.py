"""The continuous actor's tanh-Gaussian: an exact density inside the bounds, and actions on the
bounds (exploration noise clipped there) kept from dragging behaviour cloning to the bounds."""

from __future__ import annotations

import torch
from torch import distributions as D

from polyskill.agent.heads import BC_ACTION_LIMIT, TanhGaussian

LOW, HIGH = torch.tensor([-2.0, 0.0]), torch.tensor([2.0, 1.0])  # (A,) unequal bounds on purpose


def test_log_prob_is_the_squashed_normal_density_inside_the_bounds() -> None:
    torch.manual_seed(0)
    mean, log_std = torch.randn(64, 2) * 0.5, torch.randn(64, 2) * 0.3 - 0.5  # (N, A)
    dist = TanhGaussian(mean, log_std, LOW, HIGH)
    actions = dist.sample()  # (N, A)
    inside = ((2 * (actions - LOW) / (HIGH - LOW) - 1).abs() < BC_ACTION_LIMIT).all(-1)
    assert inside.float().mean() > 0.9
    reference = D.TransformedDistribution(
        D.Normal(mean, log_std.exp()),
        [D.TanhTransform(), D.AffineTransform((LOW + HIGH) / 2, (HIGH - LOW) / 2)],
    )
    expected = reference.log_prob(actions).sum(-1)  # (N,)
    # the Jacobian of the affine part is a constant per action dimension
    expected = expected + torch.log((HIGH - LOW) / 2).sum()
    torch.testing.assert_close(dist.log_prob(actions)[inside], expected[inside],
                               atol=2e-3, rtol=1e-4)  # fmt: skip


def _fit(actions: torch.Tensor, steps: int = 1500) -> tuple[float, float]:
    """Behaviour cloning of one state's actions (N, 1) in [-1, 1]: (greedy action, pre-tanh std)."""
    mean = torch.zeros(1, requires_grad=True)
    log_std = torch.zeros(1, requires_grad=True)
    opt = torch.optim.Adam([mean, log_std], lr=0.02)
    for _ in range(steps):
        dist = TanhGaussian(mean.expand(len(actions), 1), log_std.expand(len(actions), 1),
                            -torch.ones(1), torch.ones(1))  # fmt: skip
        loss = -dist.log_prob(actions).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(torch.tanh(mean.detach())), float(log_std.detach().exp())


def test_actions_clipped_at_the_bounds_do_not_drag_the_fit_to_them() -> None:
    """80 % of the kept actions centre on 0, 20 % were clipped at +1 by exploration noise. Read at
    their face value (0.999, pre-tanh 3.8) those fifth would move the greedy action to ~0.64 and
    widen the std to ~1.5; read at the limit, ~0.49 and ~1.1."""
    g = torch.Generator().manual_seed(0)
    interior = torch.tanh(0.3 * torch.randn(800, 1, generator=g))
    actions = torch.cat([interior, torch.ones(200, 1)])  # (1000, 1)
    greedy, std = _fit(actions)
    assert 0.35 < greedy < 0.55, greedy
    assert std < 1.25, std
    # all on the bound: the fit saturates only as far as the limit
    greedy_all, _ = _fit(torch.ones(100, 1))
    assert abs(greedy_all - BC_ACTION_LIMIT) < 0.02, greedy_all
