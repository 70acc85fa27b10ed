"""One learner update: joint loss on a batch of windows, an AdamW step, Polyak targets."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from polyskill.agent.network import AgentNetwork

from .batch import TensorBatch
from .losses import LossConfig, compute_loss


@dataclass
class OptimConfig:
    lr: float = 1e-4
    weight_decay: float = 1e-3
    grad_clip: float = 1.0
    warmup_updates: int = 500
    """Linear learning-rate warm-up, then constant (or decayed, see lr_decay_updates)."""
    lr_decay_updates: int = 0
    """After warm-up, cosine-decay the learning rate to lr * lr_final_fraction over this many
    updates and hold it there (0: no decay). Small late steps keep a greedy policy from
    flipping between evaluations (docs/benchmarks.md, fourth training round)."""
    lr_final_fraction: float = 0.1
    tau: float = 0.003
    """Polyak rate of the target actor and critics."""

    def validate(self) -> None:
        if self.lr <= 0 or not 0 < self.tau <= 1:
            raise ValueError(f"need lr > 0 and 0 < tau <= 1, got lr={self.lr}, tau={self.tau}")
        if self.warmup_updates < 0 or self.lr_decay_updates < 0:
            raise ValueError("warmup_updates and lr_decay_updates must be >= 0")
        if not 0 <= self.lr_final_fraction <= 1:
            raise ValueError(f"lr_final_fraction must be in [0, 1], got {self.lr_final_fraction}")

    def lr_factor(self, n: int) -> float:
        """Multiplier of lr at update n (0-based): linear warm-up, then optional cosine decay."""
        warmup = max(1, self.warmup_updates)
        if n + 1 < warmup or self.lr_decay_updates == 0:
            return min(1.0, (n + 1) / warmup)
        progress = min(1.0, (n + 1 - warmup) / self.lr_decay_updates)
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.lr_final_fraction + (1.0 - self.lr_final_fraction) * cosine


class Learner:
    def __init__(self, network: AgentNetwork, optim: OptimConfig, loss: LossConfig) -> None:
        self.network, self.optim_cfg, self.loss_cfg = network, optim, loss
        params = [p for p in network.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=optim.lr, weight_decay=optim.weight_decay)
        # NOTE: a plain function (LambdaLR saves no state for those): the schedule comes from
        # the config, so a checkpoint resumes it from the step count alone.
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda n: optim.lr_factor(n)
        )
        self.params = params

    def update(self, batch: TensorBatch) -> dict[str, float]:
        self.network.train()
        loss, metrics = compute_loss(self.network, batch, self.loss_cfg)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.optim_cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.network.update_targets(self.optim_cfg.tau)
        metrics["losses/grad_norm"] = float(grad_norm)
        metrics["losses/lr"] = self.scheduler.get_last_lr()[0]
        return metrics

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
