"""The agent's network, written once: timestep encoder -> trajectory transformer -> heads.

Used by the learner (full sequences), the collector and the server (one step over a KV cache) and
the ONNX export. Target heads are Polyak copies of the actor and critics; as in the AMAGO
reference they read the online transformer's features, so there is one sequence model.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .config import NetworkConfig
from .encoders import TimestepEncoder
from .heads import Actor, CriticEnsemble
from .kv_cache import KVCache
from .popart import PopArt
from .spaces import ActionSpec, ObsSpec
from .transformer import TrajectoryTransformer
from .two_hot import TwoHotBins


class AgentNetwork(nn.Module):
    def __init__(self, cfg: NetworkConfig, obs_spec: ObsSpec, action_spec: ActionSpec) -> None:
        super().__init__()
        self.cfg, self.obs_spec, self.action_spec = cfg, obs_spec, action_spec
        self.encoder = TimestepEncoder(obs_spec, action_spec, cfg)
        self.transformer = TrajectoryTransformer(cfg)
        self.actor = Actor(cfg, action_spec)
        self.critics = CriticEnsemble(cfg, action_spec)
        if cfg.agent == "amago2":
            self.bins = TwoHotBins(cfg.num_bins, cfg.bin_low, cfg.bin_high, cfg.critic_decode)
            if cfg.critic_start == "zero":
                self.critics.start_at(self.bins.start_logits(0.0))
        else:
            self.popart = PopArt(len(cfg.gammas))
        self.target_actor = copy.deepcopy(self.actor).requires_grad_(False)
        self.target_critics = copy.deepcopy(self.critics).requires_grad_(False)
        self.register_buffer("gammas", torch.tensor(cfg.gammas))
        if action_spec.kind == "continuous":
            self.register_buffer("act_low", torch.tensor(action_spec.low), persistent=False)
            self.register_buffer("act_high", torch.tensor(action_spec.high), persistent=False)

    # ---- inputs -------------------------------------------------------------------------------
    def action_input(self, actions: torch.Tensor) -> torch.Tensor:
        """Env actions -> network input: one-hot (discrete) or scaled to [-1, 1] (continuous).

        Discrete (...) int -> (..., n); continuous (..., dim) -> (..., dim).
        """
        if self.action_spec.kind == "discrete":
            return F.one_hot(actions.long(), self.action_spec.n).float()
        return 2.0 * (actions.float() - self.act_low) / (self.act_high - self.act_low) - 1.0

    def features(
        self,
        obs: dict[str, torch.Tensor],  # field -> (B, T, ...)
        prev_actions: torch.Tensor,  # (B, T[, dim])
        prev_rewards: torch.Tensor,  # (B, T)
        new_episode: torch.Tensor,  # (B, T)
        positions: torch.Tensor,  # (B, T)
    ) -> torch.Tensor:  # (B, T, D)
        tokens = self.encoder(obs, self.action_input(prev_actions), prev_rewards, new_episode)
        return self.transformer(tokens, positions)

    def step_features(
        self,
        obs: dict[str, torch.Tensor],  # field -> (B, ...)
        prev_action: torch.Tensor,  # (B[, dim])
        prev_reward: torch.Tensor,  # (B,)
        new_episode: torch.Tensor,  # (B,)
        positions: torch.Tensor,  # (B,)
        cache: KVCache,
        slot_ids: torch.Tensor | None = None,
        starts: torch.Tensor | None = None,
    ) -> torch.Tensor:  # (B, D)
        tokens = self.step_tokens(obs, prev_action, prev_reward, new_episode)  # (B, D)
        return self.transformer.step(tokens, positions, cache, slot_ids, starts)

    def step_tokens(
        self,
        obs: dict[str, torch.Tensor],  # field -> (B, ...)
        prev_action: torch.Tensor,  # (B[, dim])
        prev_reward: torch.Tensor,  # (B,)
        new_episode: torch.Tensor,  # (B,)
    ) -> torch.Tensor:  # (B, D)
        """One timestep's token per sequence (also the ONNX export's first stage)."""
        seq = {k: v.unsqueeze(1) for k, v in obs.items()}  # (B, 1, ...)
        tokens = self.encoder(
            seq,
            self.action_input(prev_action).unsqueeze(1),
            prev_reward.unsqueeze(1),
            new_episode.unsqueeze(1),
        )  # (B, 1, D)
        return tokens[:, 0]

    # ---- values -------------------------------------------------------------------------------
    def critic_values(self, critic_out: torch.Tensor, all_actions: bool = False) -> torch.Tensor:
        """Critic outputs -> raw-scale values, dropping the last (bins or scalar) axis.

        (C, ..., G, o) -> (C, ..., G); all_actions (discrete): (C, ..., G, A, o) -> (C, ..., G, A).
        """
        if self.cfg.agent == "amago2":
            return self.bins.decode_logits(critic_out)
        x = critic_out[..., 0]
        if all_actions:
            return self.popart.denormalize(x.transpose(-1, -2)).transpose(-1, -2)
        return self.popart.denormalize(x)

    @torch.no_grad()
    def update_targets(self, tau: float) -> None:
        for online, target in (
            (self.actor, self.target_actor),
            (self.critics, self.target_critics),
        ):
            for p, tp in zip(online.parameters(), target.parameters(), strict=True):
                tp.lerp_(p, tau)
