"""PyTorch backend: wraps `polyskill.agent.policy.Policy` (network + preallocated KV-cache pool).

Must be called from one thread only (the batcher's model thread): the cache is written in place.
"""

from __future__ import annotations

from pathlib import Path

import torch

from polyskill.agent.checkpoint import load_network
from polyskill.agent.network import AgentNetwork
from polyskill.agent.policy import ActionParams, Policy, StepInputs

from .base import Backend


class TorchBackend(Backend):
    def __init__(self, network: AgentNetwork, num_slots: int, device: str = "cpu") -> None:
        super().__init__(network.obs_spec, network.action_spec, network.cfg.context_length)
        self.policy = Policy(network, num_slots, device)
        self.name = f"torch-{torch.device(device).type}"

    @staticmethod
    def from_checkpoint(path: str | Path, num_slots: int, device: str = "cpu") -> TorchBackend:
        return TorchBackend(load_network(path, device), num_slots, device)

    @property
    def num_slots(self) -> int:
        return self.policy.num_slots

    @property
    def cache_bytes(self) -> int:
        return self.policy.cache.nbytes

    def step(self, inputs: StepInputs) -> ActionParams:
        return self.policy.step(inputs)
