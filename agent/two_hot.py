"""Symlog value classification: the scale-invariant critic target of AMAGO-2.

Values are never regressed. A scalar target y becomes a "two-hot" distribution over fixed bins
placed evenly in symlog space, so a task paid in thousands and a task paid in fractions give
losses of the same size. The bin range is fixed (never normalised per task or over time).

    python -m pytest tests/unit/test_two_hot.py
"""

from __future__ import annotations

from typing import Literal, get_args

import torch

Decode = Literal["symlog", "mean", "trimmed"]
"""How a value is read off the bins (see NetworkConfig.critic_decode)."""

TRIM_FLOOR = 0.25
""""trimmed" drops bins holding less than TRIM_FLOOR / num_bins of the probability (a quarter of
the uniform share): the softmax's noise floor, which on the far bins of a wide symlog range
(+-1e5) can outweigh a small task's whole value (measured: 1.7 % of mass, 11.6 of a 30 value)."""


def symlog(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.expm1(x.abs())


class TwoHotBins(torch.nn.Module):
    """B bins evenly spaced in symlog space over [low, high] (in raw value units)."""

    def __init__(
        self, num_bins: int, low: float = -1e5, high: float = 1e5, decode: Decode = "symlog"
    ) -> None:
        super().__init__()
        if decode not in get_args(Decode):
            raise ValueError(f"decode must be one of {get_args(Decode)}, got {decode!r}")
        self.decode = decode
        if num_bins < 2:
            raise ValueError(f"two-hot needs at least 2 bins, got {num_bins}")
        if not low < high:
            raise ValueError(f"bin range must satisfy low < high, got [{low}, {high}]")
        lo, hi = symlog(torch.tensor(float(low))), symlog(torch.tensor(float(high)))
        self.register_buffer("centers", torch.linspace(lo.item(), hi.item(), num_bins))

    @property
    def num_bins(self) -> int:
        return self.centers.shape[0]

    @property
    def values(self) -> torch.Tensor:
        """(B,) the bins' raw values."""
        return symexp(self.centers)

    def encode(self, y: torch.Tensor) -> torch.Tensor:
        """(...) raw values -> (..., B) two-hot labels summing to 1."""
        return self.project(y.unsqueeze(-1), torch.ones_like(y).unsqueeze(-1))

    def project(self, y: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """A distribution over K raw values onto the bins: y, probs (..., K) -> (..., B) labels.

        Each value is split two-hot between its neighbouring bins (in symlog space) with its
        probability; the distributional TD target projects r + gamma z_j of every next-state bin
        z_j this way (C51's projection, in symlog space)."""
        c = self.centers
        x = symlog(y).clamp(c[0], c[-1])
        hi = torch.searchsorted(c, x.contiguous(), right=False).clamp(1, c.shape[0] - 1)
        lo = hi - 1
        w_hi = (x - c[lo]) / (c[hi] - c[lo])  # (..., K)
        labels = torch.zeros(*y.shape[:-1], c.shape[0], dtype=y.dtype, device=y.device)
        labels.scatter_add_(-1, lo, probs * (1.0 - w_hi))
        labels.scatter_add_(-1, hi, probs * w_hi)
        return labels

    def start_logits(self, value: float = 0.0, floor: float = 1e-3) -> torch.Tensor:
        """(B,) logits of a near-certain `value`: its two-hot labels, every bin at least `floor`
        (below trimmed's noise floor for up to 250 bins)."""
        return torch.log(self.encode(torch.tensor(float(value))) + floor)

    def decode_probs(self, probs: torch.Tensor, decode: Decode | None = None) -> torch.Tensor:
        """(..., B) probabilities -> (...) raw values: symexp of the expected bin position
        ("symlog"), the expected raw bin value ("mean"), or that expectation over the bins above
        the noise floor, renormalised ("trimmed"). `decode` defaults to the bins' own read-out;
        diagnostics pass another to compare read-outs of one critic."""
        decode = decode or self.decode
        if decode == "mean":
            return probs @ self.values
        if decode == "trimmed":
            return self.trim(probs) @ self.values
        return symexp(probs @ self.centers)

    def trim(self, probs: torch.Tensor) -> torch.Tensor:
        """(..., B) -> (..., B): the bins above the noise floor (TRIM_FLOOR / B), renormalised.
        The most likely bin always clears it (it holds at least 1 / B)."""
        kept = probs * (probs >= TRIM_FLOOR / self.num_bins)
        return kept / kept.sum(-1, keepdim=True)

    def decode_logits(self, logits: torch.Tensor) -> torch.Tensor:
        return self.decode_probs(torch.softmax(logits, dim=-1))
