"""One learner update: joint loss on a batch of windows, an AdamW step, Polyak targets."""

from __future__ import annotations

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
    """Linear learning-rate warm-up, then constant."""
    tau: float = 0.003
    """Polyak rate of the target actor and critics."""


class Learner:
    def __init__(self, network: AgentNetwork, optim: OptimConfig, loss: LossConfig) -> None:
        self.network, self.optim_cfg, self.loss_cfg = network, optim, loss
        params = [p for p in network.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=optim.lr, weight_decay=optim.weight_decay)
        warmup = max(1, optim.warmup_updates)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda n: min(1.0, (n + 1) / warmup)
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
