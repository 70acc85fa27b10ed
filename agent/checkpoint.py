"""Checkpoints: weights (safetensors) + network config + observation/action specs (JSON).

No pickle anywhere: loading a checkpoint needs only this project's code, so a server can load a
model it did not train without executing anything from the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .config import NetworkConfig
from .network import AgentNetwork
from .spaces import ActionSpec, ObsSpec

WEIGHTS = "model.safetensors"
META = "model.json"
FORMAT_VERSION = 1


def save_network(
    network: AgentNetwork, directory: str | Path, extra: dict[str, Any] | None = None
) -> Path:
    """Write weights and metadata into `directory` (created); returns the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in network.state_dict().items()}
    tmp = directory / (WEIGHTS + ".tmp")
    save_file(state, str(tmp))
    os.replace(tmp, directory / WEIGHTS)
    meta = {
        "format_version": FORMAT_VERSION,
        "network": network.cfg.to_dict(),
        "observation_spec": network.obs_spec.to_dict(),
        "action_spec": network.action_spec.to_dict(),
        **(extra or {}),
    }
    (directory / (META + ".tmp")).write_text(json.dumps(meta, indent=2))
    os.replace(directory / (META + ".tmp"), directory / META)
    return directory


def read_meta(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / META
    if not path.exists():
        raise FileNotFoundError(
            f"{directory} is not a Polyskill checkpoint (no {META}); pass a folder written by "
            "`polyskill train` (RUN_DIR/checkpoints/latest) or a registered model"
        )
    return json.loads(path.read_text())


def load_network(directory: str | Path, device: str | torch.device = "cpu") -> AgentNetwork:
    meta = read_meta(directory)
    network = AgentNetwork(
        NetworkConfig.from_dict(meta["network"]),
        ObsSpec.from_dict(meta["observation_spec"]),
        ActionSpec.from_dict(meta["action_spec"]),
    )
    network.load_state_dict(load_file(str(Path(directory) / WEIGHTS), device="cpu"))
    return network.to(device)
