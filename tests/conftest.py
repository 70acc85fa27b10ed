"""Shared test setup: one torch thread (2-core machines), deterministic seeds."""

import torch

torch.set_num_threads(1)
