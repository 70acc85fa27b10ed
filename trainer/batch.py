"""Replay windows as torch tensors: the one place numpy batches become learner inputs."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch


@dataclass
class TensorBatch:
    """B windows of L tokens; token t is (o_t, a_{t-1}, r_{t-1}, new_episode_t) at step t."""

    obs: dict[str, torch.Tensor]  # field -> (B, L, ...)
    prev_actions: torch.Tensor  # (B, L[, dim])
    prev_rewards: torch.Tensor  # (B, L)
    new_episode: torch.Tensor  # (B, L) bool
    positions: torch.Tensor  # (B, L) int
    actions: torch.Tensor  # (B, L[, dim]) a_t
    rewards: torch.Tensor  # (B, L) r_t
    terminated: torch.Tensor  # (B, L) bool
    token_mask: torch.Tensor  # (B, L) bool
    action_mask: torch.Tensor  # (B, L) bool: a_t exists and o_{t+1} is in the window

    @staticmethod
    def from_numpy(batch: object, device: torch.device | str = "cpu") -> TensorBatch:
        """Convert any object with the same field names holding numpy arrays (replay.Batch)."""
        out = {}
        for f in fields(TensorBatch):
            value = getattr(batch, f.name)
            if isinstance(value, dict):
                out[f.name] = {
                    k: torch.as_tensor(np.asarray(v), device=device) for k, v in value.items()
                }
            else:
                out[f.name] = torch.as_tensor(np.asarray(value), device=device)
        return TensorBatch(**out)
