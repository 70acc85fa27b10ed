"""Timestep encoders: one observation (+ previous action, reward, episode flag) -> one token.

Each field kind has its own small encoder; their outputs are concatenated with the previous action,
symlog(previous reward) and the "new episode" flag, then a LayerNorm MLP makes the token.
Inputs are tensors in the network's dtypes (`agent.spaces.batch_observations`); text fields
arrive already tokenised to ids.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import NetworkConfig
from .spaces import ActionSpec, FieldSpec, ObsSpec
from .two_hot import symlog


class VectorField(nn.Module):
    """Float vector; symlog keeps large raw magnitudes (positions in mm, joint torques) tame."""

    def __init__(self, spec: FieldSpec) -> None:
        super().__init__()
        self.out_dim = int(torch.tensor(spec.shape).prod().item()) if spec.shape else 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, n) -> (B, T, n)
        return symlog(x.float())


class OneHotField(nn.Module):
    """Discrete or MultiDiscrete: concatenated one-hot codes."""

    def __init__(self, spec: FieldSpec) -> None:
        super().__init__()
        self.register_buffer(
            "offsets", torch.tensor([0, *spec.nvec[:-1]]).cumsum(0), persistent=False
        )
        self.out_dim = int(sum(spec.nvec))
        self.multi = spec.kind == "multidiscrete"

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T[, k]) int -> (B, T, sum(nvec))
        if not self.multi:
            x = x.unsqueeze(-1)
        idx = x.long() + self.offsets
        out = torch.zeros(*x.shape[:-1], self.out_dim, device=x.device)
        return out.scatter_(-1, idx, 1.0)


class ImageField(nn.Module):
    """uint8 HxWxC image -> small Nature-style CNN feature."""

    def __init__(self, spec: FieldSpec, channels: int, out_dim: int = 256) -> None:
        super().__init__()
        h, w, c = spec.shape
        self.cnn = nn.Sequential(
            nn.Conv2d(c, channels, 3, stride=2, padding=1),
            nn.LeakyReLU(),
            nn.Conv2d(channels, channels, 3, stride=2, padding=1),
            nn.LeakyReLU(),
            nn.Conv2d(channels, channels, 3, stride=1, padding=1),
            nn.LeakyReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            flat = self.cnn(torch.zeros(1, c, h, w)).shape[-1]
        self.proj = nn.Linear(flat, out_dim)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, H, W, C) uint8 -> (B, T, out)
        B, T = x.shape[:2]
        img = x.reshape(B * T, *x.shape[2:]).permute(0, 3, 1, 2).float() / 255.0  # (BT, C, H, W)
        return self.proj(self.cnn(img)).reshape(B, T, -1)


class TextField(nn.Module):
    """Token ids (0 = pad/unknown) -> mean over words of f(word + position embedding).

    Position plus the per-token nonlinearity f keep word order ("the red ball next to the blue
    key" is not "the blue ball next to the red key"): a plain mean of word embeddings, or of
    word + position without f, loses it."""

    def __init__(self, spec: FieldSpec, dim: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(len(spec.vocab) + 1, dim, padding_idx=0)
        self.position = nn.Parameter(torch.randn(spec.max_length, dim) * 0.1)  # (L, dim)
        self.mix = nn.Linear(dim, dim)
        self.out_dim = dim

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # (B, T, L) int -> (B, T, dim)
        mask = (ids > 0).float().unsqueeze(-1)  # (B, T, L, 1)
        words = self.embed(ids.long()) + self.position[: ids.shape[-1]]  # (B, T, L, dim)
        words = F.leaky_relu(self.mix(words))
        return (words * mask).sum(-2) / mask.sum(-2).clamp(min=1.0)


def make_field_encoder(spec: FieldSpec, cfg: NetworkConfig) -> nn.Module:
    if spec.kind == "vector":
        return VectorField(spec)
    if spec.kind in ("discrete", "multidiscrete"):
        return OneHotField(spec)
    if spec.kind == "image":
        return ImageField(spec, cfg.image_channels)
    if spec.kind == "text":
        return TextField(spec, cfg.text_embed_dim)
    raise ValueError(f"no encoder for field kind {spec.kind!r}")


class TimestepEncoder(nn.Module):
    def __init__(self, obs_spec: ObsSpec, action_spec: ActionSpec, cfg: NetworkConfig) -> None:
        super().__init__()
        # NOTE: a list, not a ModuleDict: field names like "keys" would shadow its methods
        self.field_names = [f.name for f in obs_spec.fields]
        self.fields = nn.ModuleList(make_field_encoder(f, cfg) for f in obs_spec.fields)
        in_dim = sum(e.out_dim for e in self.fields) + action_spec.input_size + 2
        hid = cfg.encoder_hidden
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hid),
            nn.LayerNorm(hid),
            nn.LeakyReLU(),
            nn.Linear(hid, hid),
            nn.LayerNorm(hid),
            nn.LeakyReLU(),
            nn.Linear(hid, cfg.d_model),
        )

    def forward(
        self,
        obs: dict[str, torch.Tensor],
        prev_action: torch.Tensor,  # (B, T, A) float (one-hot for discrete)
        prev_reward: torch.Tensor,  # (B, T) raw reward
        new_episode: torch.Tensor,  # (B, T) bool
    ) -> torch.Tensor:  # (B, T, D)
        parts = [enc(obs[name]) for name, enc in zip(self.field_names, self.fields, strict=True)]
        parts += [
            prev_action.float(),
            symlog(prev_reward.float()).unsqueeze(-1),
            new_episode.float().unsqueeze(-1),
        ]
        return self.mlp(torch.cat(parts, dim=-1))
