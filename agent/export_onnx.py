"""ONNX export of the single-step function, with the KV-cache pool as an explicit input.

`Policy.step` writes each new key/value into the cache in place (`KVCache.write`, an index_put),
which does not map onto a pure ONNX function. `OnnxStep` computes the SAME math functionally:

    inputs : obs fields (B, ...), prev_action (B[, dim]), prev_reward (B,), new_episode (B,) bool,
             positions (B,) int64, starts (B,) int64, slot_ids (B,) int64,
             cache_k.l, cache_v.l (S, H, W, hd) per layer l - the whole pool, bound once
    outputs: probs (B, A)  or  mean, std (B, dim)  - the acting (last) discount's distribution
             new_k, new_v (L, B, H, hd)            - this token's key/value per layer

Inside, each layer gathers its slots' rings and attends over them with `KVCache.valid_mask`, the
entry at ring index position % W replaced by the new token (what `KVCache.write` does); the
backend then writes new_k/new_v into its pool (a few KB), so the cache itself is never copied out
of or into ONNX Runtime. Batch B and slot count S are dynamic; the ring length W is the model's
context (fixed per model: how full a ring is follows from positions/starts, not from its shape).

    python -m polyskill.agent.export_onnx RUN/checkpoints/latest   # writes model.onnx there
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .checkpoint import load_network
from .heads import Categorical
from .kv_cache import ring_valid
from .network import AgentNetwork
from .transformer import sinusoidal

ONNX_FILE = "model.onnx"
OPSET = 17
STEP_INPUTS = ("prev_action", "prev_reward", "new_episode", "positions", "starts", "slot_ids")


def cache_input_names(num_layers: int) -> list[str]:
    """Per-layer pool inputs (S, H, W, hd): views of one `KVCache`, bound by pointer."""
    return [f"cache_{kv}.{layer}" for layer in range(num_layers) for kv in ("k", "v")]


def obs_input_name(field: str) -> str:
    return f"obs.{field}"


def output_names(network: AgentNetwork) -> list[str]:
    dist = ["probs"] if network.action_spec.kind == "discrete" else ["mean", "std"]
    return [*dist, "new_k", "new_v"]


class OnnxStep(nn.Module):
    """`Policy.step` as a pure function of (inputs, cache pool) -> (distribution, new k/v)."""

    def __init__(self, network: AgentNetwork) -> None:
        super().__init__()
        self.net = network.eval()
        self.fields = network.obs_spec.names
        self.window = network.cfg.context_length

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n = len(self.fields)
        obs = dict(zip(self.fields, args[:n], strict=True))
        prev_action, prev_reward, new_episode, positions, starts, slot_ids = args[n : n + 6]
        net, W = self.net, self.window
        caches = args[n + 6 :]  # cache_k.0, cache_v.0, cache_k.1, ...: (S, H, W, hd) each
        tokens = net.step_tokens(obs, prev_action, prev_reward, new_episode)  # (B, D)
        h = (tokens + sinusoidal(positions, tokens.shape[-1])).unsqueeze(1)  # (B, 1, D)
        j = torch.arange(W, device=positions.device)[None, :]  # (1, W)
        # Cached entries to attend to: valid ones, except the ring entry the new token replaces.
        replaced = j == (positions % W)[:, None]  # (B, W)
        old_ok = (ring_valid(positions, starts, W) & ~replaced)[:, None, None, :]
        new_k, new_v = [], []
        for layer, block in enumerate(net.transformer.blocks):
            q, k, v = block._heads(block.ln1(h))  # (B, H, 1, hd)
            keys = caches[2 * layer].index_select(0, slot_ids)  # (B, H, W, hd)
            values = caches[2 * layer + 1].index_select(0, slot_ids)
            # NOTE: softmax over [cached entries, new token] = SDPA over the ring after
            # KVCache.write, without materialising a written copy of the ring.
            scale = q.shape[-1] ** -0.5
            s_old = (q @ keys.transpose(-1, -2)) * scale  # (B, H, 1, W)
            s_old = s_old.masked_fill(~old_ok, float("-inf"))
            s_new = (q * k).sum(-1, keepdim=True) * scale  # (B, H, 1, 1)
            p = torch.softmax(torch.cat([s_old, s_new], dim=-1), dim=-1)  # (B, H, 1, W + 1)
            y = p[..., :W] @ values + p[..., W:] * v  # (B, H, 1, hd)
            h = block._out(h, y)
            new_k.append(k[:, :, 0])
            new_v.append(v[:, :, 0])
        features = net.transformer.ln_f(h[:, 0])  # (B, D)
        dist = net.actor(features)
        kv = (torch.stack(new_k), torch.stack(new_v))  # (L, B, H, hd) each
        if isinstance(dist, Categorical):
            return dist.probs[:, -1], *kv
        return dist.mean[:, -1], dist.std[:, -1], *kv


def example_inputs(
    network: AgentNetwork, batch: int = 3, slots: int = 4
) -> tuple[list[str], tuple[torch.Tensor, ...]]:
    """Input names and example tensors. Sizes >= 2 so the exporter keeps B and S dynamic."""
    from .spaces import NUMPY_DTYPES

    cfg, spec = network.cfg, network.action_spec
    names, tensors = [], []
    for f in network.obs_spec.fields:
        names.append(obs_input_name(f.name))
    for f in network.obs_spec.fields:  # zeros (B, ...) in the dtypes the network takes
        shape = (f.max_length,) if f.kind == "text" else f.shape
        dtype = NUMPY_DTYPES.get(f.kind, np.int64)
        tensors.append(torch.as_tensor(np.zeros((batch, *shape), dtype=dtype)))
    hd = cfg.d_model // cfg.num_heads
    cache_shape = (slots, cfg.num_heads, cfg.context_length, hd)
    prev_action = (
        torch.zeros(batch, dtype=torch.long)
        if spec.kind == "discrete"
        else torch.zeros(batch, spec.dim)
    )
    tensors += [
        prev_action,
        torch.zeros(batch),
        torch.zeros(batch, dtype=torch.bool),
        torch.arange(batch, dtype=torch.long) + 2,
        torch.zeros(batch, dtype=torch.long),
        torch.arange(batch, dtype=torch.long),
    ]
    tensors += [torch.randn(cache_shape) for _ in range(2 * cfg.num_layers)]
    return [*names, *STEP_INPUTS, *cache_input_names(cfg.num_layers)], tuple(tensors)


def export_network(network: AgentNetwork, path: str | Path) -> Path:
    """Write the step function to `path` (one .onnx file) and check it with onnx.checker."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    step = OnnxStep(network.cpu().eval())
    names, args = example_inputs(network)
    outputs = output_names(network)
    dynamic = {n: ({0: "slots"} if n.startswith("cache_") else {0: "batch"}) for n in names}
    dynamic.update({o: ({1: "batch"} if o.startswith("new_") else {0: "batch"}) for o in outputs})
    tmp = path.with_suffix(".onnx.tmp")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy (TorchScript) exporter's deprecation notice
        # NOTE: the TorchScript exporter writes one self-contained file in ~1 s; the dynamo
        # exporter also works here but writes .onnx + .onnx.data and takes several seconds.
        torch.onnx.export(
            step,
            args,
            str(tmp),
            input_names=names,
            output_names=outputs,
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,
        )
    onnx.checker.check_model(str(tmp))
    tmp.replace(path)
    return path


def export_checkpoint(directory: str | Path, path: str | Path | None = None) -> Path:
    """Export a checkpoint folder's network; default target: <directory>/model.onnx."""
    directory = Path(directory)
    return export_network(load_network(directory), path or directory / ONNX_FILE)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", help="checkpoint folder (model.safetensors + model.json)")
    p.add_argument("--out", help=f"target file (default CHECKPOINT/{ONNX_FILE})")
    args = p.parse_args(argv)
    print(export_checkpoint(args.checkpoint, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
