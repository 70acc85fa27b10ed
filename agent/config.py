"""The network's configuration: one typed place for every architectural setting."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, get_args

from .two_hot import Decode

CriticStart = Literal["uniform", "zero"]
"""Where amago2's critic distributions start (see NetworkConfig.critic_start)."""


@dataclass
class NetworkConfig:
    agent: Literal["amago2", "baseline"] = "amago2"
    """amago2: two-hot critic + binary-filtered BC (scale-invariant); baseline: scalar PopArt critic
    + Q-maximising actor (AMAGO-1 style, reward-scale dependent)."""
    d_model: int = 128
    """Width of the trajectory transformer (and of the timestep embedding)."""
    num_layers: int = 2
    num_heads: int = 8
    d_ff: int = 512
    dropout: float = 0.05
    context_length: int = 64
    """Tokens the policy attends over; at inference the KV cache slides past this window."""
    encoder_hidden: int = 256
    """Hidden width of the timestep encoder MLP."""
    image_channels: int = 32
    """Width of the small CNN used for image fields."""
    text_embed_dim: int = 32
    head_hidden: int = 256
    """Hidden width of actor and critic MLPs."""
    num_critics: int = 4
    gammas: tuple[float, ...] = (0.1, 0.9, 0.95, 0.97, 0.99, 0.995, 0.999)
    """Discounts learned at once (multi-gamma); the policy acts with the last one."""
    num_bins: int = 64
    bin_low: float = -1e5
    bin_high: float = 1e5
    """The values amago2's bins span (discounted returns times `LossConfig.reward_multiplier`),
    placed evenly in symlog space. The wide default lets tasks of any scale share one critic.
    A preset whose returns are known can fit the range to them, and should where trials end by
    time limit: no terminal step then anchors the critic. The softmax's floor on far bins is
    carried from state to state by distributional targets, and at +-1e5 a fraction of a percent
    of it outweighs the whole return. The `point` task read +3,373 against a return-to-go of
    -286 with the wide range; fitted to [-3,000, 300], the same targets learned it in all four
    seeds. Fit the spacing too: 32 bins over that range are 0.44 apart in symlog space. With
    rewards x100, bins at that spacing learned the task, and the range times 100 (0.74 apart)
    did not (docs/results/barrier.md, "point"). The Meta-World presets fit theirs the same way
    (32 bins over [-100, 8,000], rewards x1): amago2 alone then beat a random policy on reach
    and button-press in two seeds at 300k env steps, which it did not with +-1e5."""
    critic_decode: Decode = "trimmed"
    """How amago2 reads a value off its bin distribution (advantages, hence the actor's filter,
    and scalar TD targets use it). "symlog" = symexp of the expected symlog bin (DreamerV3 and
    the AMAGO reference code): a risk-averse certainty equivalent, which kept amago2 from
    exploring a sparse task; "mean" = the expected raw bin value (with distributional TD targets,
    the expected return), but a big-reward task's far bins then swamp a small task's values in a
    mix; "trimmed" (default) = that mean over the bins above the softmax's noise floor.
    docs/results/barrier.md has the runs. Configs stored without it read as "symlog"."""
    critic_start: CriticStart = "zero"
    """amago2's critic distributions at initialisation. "zero" (default): output biases at the log
    of 0's two-hot labels (far bins ~0.1 %), so every read-out starts near 0. "uniform": PyTorch's
    init, near-uniform over all bins, so with a wide range (+-1e5) the mean and trimmed read-outs
    start at large random values and distributional TD targets bootstrap from that far-bin mass;
    it learned the `scales` mixes' big-reward task and `smoke` slower and left a single-task
    bandit seed at chance (docs/results/barrier.md). Configs stored without it read as "uniform"."""
    log_std_min: float = -5.0
    log_std_max: float = 1.0
    prob_min: float = 1e-3
    """Discrete policies clip action probabilities to [prob_min, prob_max]."""
    prob_max: float = 0.99

    def __post_init__(self) -> None:
        self.gammas = tuple(float(g) for g in self.gammas)
        if self.agent not in ("amago2", "baseline"):
            raise ValueError(f"agent must be 'amago2' or 'baseline', got {self.agent!r}")
        if self.d_model % self.num_heads:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})"
            )
        if self.context_length < 2:
            raise ValueError(f"context_length must be >= 2, got {self.context_length}")
        if not self.gammas or not all(0.0 <= g < 1.0 for g in self.gammas):
            raise ValueError(
                f"gammas must be a non-empty list of values in [0, 1), got {self.gammas}"
            )
        if self.critic_decode not in get_args(Decode):
            raise ValueError(
                f"critic_decode must be one of {get_args(Decode)}, got {self.critic_decode!r}"
            )
        if self.critic_start not in get_args(CriticStart):
            raise ValueError(
                f"critic_start must be one of {get_args(CriticStart)}, got {self.critic_start!r}"
            )
        if self.num_critics < 2:
            raise ValueError(
                f"num_critics must be >= 2 (targets average 2 of them), got {self.num_critics}"
            )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["gammas"] = list(self.gammas)
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> NetworkConfig:
        known = {f.name for f in fields(NetworkConfig)}
        # stored before these settings existed: those runs read values as "symlog" and started
        # their critics at PyTorch's init
        d = {"critic_decode": "symlog", "critic_start": "uniform", **d}
        return NetworkConfig(**{k: v for k, v in d.items() if k in known})
