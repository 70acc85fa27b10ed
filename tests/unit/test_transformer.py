"""The cached single-step path must reproduce the full-sequence forward, window slides included."""

import pytest
import torch

from polyskill.agent.config import NetworkConfig
from polyskill.agent.transformer import TrajectoryTransformer


def make(window: int) -> TrajectoryTransformer:
    torch.manual_seed(0)
    cfg = NetworkConfig(
        d_model=32, num_layers=2, num_heads=4, d_ff=64, dropout=0.0, context_length=window
    )
    return TrajectoryTransformer(cfg).eval()


@pytest.mark.parametrize("T", [1, 5, 8, 13, 30])
def test_step_matches_forward_including_sliding_window(T: int) -> None:
    window, B = 8, 3
    model = make(window)
    x = torch.randn(B, T, 32)
    positions = torch.arange(T).expand(B, T)
    full = model(x, positions)  # (B, T, D), banded causal mask of width `window`
    cache = model.make_cache(num_slots=B)
    stepped = torch.stack([model.step(x[:, t], positions[:, t], cache) for t in range(T)], dim=1)
    torch.testing.assert_close(stepped, full, atol=1e-5, rtol=0)


def test_step_on_a_subset_of_slots_leaves_other_slots_untouched() -> None:
    model = make(window=4)
    cache = model.make_cache(num_slots=5)
    x = torch.randn(2, 3, 32)
    before = cache.k[:, [0, 2, 4]].clone()
    slots = torch.tensor([3, 1])
    outs = [model.step(x[:, t], torch.full((2,), t), cache, slots) for t in range(3)]
    torch.testing.assert_close(cache.k[:, [0, 2, 4]], before)
    full = model(x, torch.arange(3).expand(2, 3))
    torch.testing.assert_close(torch.stack(outs, 1), full, atol=1e-5, rtol=0)


def test_context_starting_mid_trial_matches() -> None:
    """Re-encoding a context from position 100 on: `starts` marks the first cached token."""
    model = make(window=6)
    x = torch.randn(2, 10, 32)
    positions = torch.arange(100, 110).expand(2, 10)
    full = model(x, positions)
    cache = model.make_cache(2)
    starts = torch.full((2,), 100)
    stepped = torch.stack(
        [model.step(x[:, t], positions[:, t], cache, None, starts) for t in range(10)], 1
    )
    torch.testing.assert_close(stepped, full, atol=1e-5, rtol=0)


def test_evenly_spaced_slots_step_as_a_strided_view() -> None:
    """Slots dealt round-robin (1, 3, 5) are stepped through a strided slice of the cache (no
    gather): same outputs as the full forward, window slide included, other slots untouched."""
    import numpy as np

    from polyskill.agent.policy import _slots

    assert _slots(np.array([1, 3, 5]), torch.device("cpu")) == slice(1, 6, 2)
    assert _slots(np.array([4]), torch.device("cpu")) == slice(4, 5)
    assert isinstance(_slots(np.array([0, 2, 5]), torch.device("cpu")), torch.Tensor)
    assert isinstance(_slots(np.array([3, 1]), torch.device("cpu")), torch.Tensor)
    model = make(window=4)
    cache = model.make_cache(num_slots=7)
    before = cache.k[:, [0, 2, 4, 6]].clone()
    x = torch.randn(3, 9, 32)
    positions = torch.arange(9).expand(3, 9)
    stepped = torch.stack([model.step(x[:, t], positions[:, t], cache, slice(1, 6, 2))
                           for t in range(9)], 1)
    torch.testing.assert_close(stepped, model(x, positions), atol=1e-5, rtol=0)
    torch.testing.assert_close(cache.k[:, [0, 2, 4, 6]], before)
