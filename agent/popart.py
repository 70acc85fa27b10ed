"""PopArt: one global, task-agnostic return normaliser for the scalar (baseline) critic.

Keeps running first/second moments of the TD targets per discount and, when they move, rescales
the critic's output layer so its de-normalised outputs stay the same ("preserving outputs
precisely"). This is the reward-scale *dependent* baseline: one normaliser for all tasks, so
big-reward tasks set the scale everyone is learned at.
"""

from __future__ import annotations

import torch
from torch import nn


class PopArt(nn.Module):
    def __init__(self, num_gammas: int, beta: float = 3e-4, min_std: float = 1e-4) -> None:
        super().__init__()
        self.beta, self.min_std = beta, min_std
        self.register_buffer("mu", torch.zeros(num_gammas))
        self.register_buffer("nu", torch.ones(num_gammas))

    @property
    def sigma(self) -> torch.Tensor:
        return (self.nu - self.mu**2).clamp(min=self.min_std**2).sqrt()

    def normalize(self, y: torch.Tensor) -> torch.Tensor:  # (..., G)
        return (y - self.mu) / self.sigma

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:  # (..., G)
        return x * self.sigma + self.mu

    @torch.no_grad()
    def update(self, targets: torch.Tensor, out_layers: list[nn.Module]) -> None:
        """targets (N, G) raw; out_layers: EnsembleLinear layers with G outputs to rescale."""
        if targets.numel() == 0:
            return
        mu_old, sigma_old = self.mu.clone(), self.sigma.clone()
        self.mu.lerp_(targets.mean(0), self.beta)
        self.nu.lerp_((targets**2).mean(0), self.beta)
        sigma_new = self.sigma
        G = self.mu.shape[0]
        for layer in out_layers:  # weight (C, in, G*k), bias (C, 1, G*k): k outputs per discount
            w = layer.weight.view(*layer.weight.shape[:2], G, -1)
            b = layer.bias.view(*layer.bias.shape[:2], G, -1)
            w.mul_((sigma_old / sigma_new)[:, None])
            b.copy_((sigma_old[:, None] * b + (mu_old - self.mu)[:, None]) / sigma_new[:, None])
