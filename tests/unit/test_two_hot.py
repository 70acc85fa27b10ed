import pytest
import torch

from polyskill.agent.two_hot import TwoHotBins, symexp, symlog


def test_symlog_symexp_are_inverse() -> None:
    x = torch.cat([-torch.logspace(-4, 6, 50), torch.zeros(1), torch.logspace(-4, 6, 50)]).double()
    torch.testing.assert_close(symexp(symlog(x)), x, rtol=1e-9, atol=1e-9)


def test_two_hot_round_trip_within_bin_resolution() -> None:
    bins = TwoHotBins(64).double()
    y = torch.cat(
        [-torch.logspace(-3, 5, 200), torch.zeros(1), torch.logspace(-3, 5, 200)]
    ).double()
    labels = bins.encode(y)
    torch.testing.assert_close(labels.sum(-1), torch.ones_like(y))
    assert (labels > 0).sum(-1).max() <= 2
    # decoding the label's expectation in symlog space is exact for in-range values
    torch.testing.assert_close(symlog(bins.decode_probs(labels)), symlog(y), atol=1e-9, rtol=0)


def test_two_hot_clips_out_of_range_values_to_the_edge_bins() -> None:
    bins = TwoHotBins(32, low=-10, high=10)
    labels = bins.encode(torch.tensor([1e6, -1e6]))
    assert labels[0, -1] == 1 and labels[1, 0] == 1


def test_bin_positions_are_even_in_symlog_space() -> None:
    bins = TwoHotBins(16)
    gaps = bins.centers.diff()
    torch.testing.assert_close(gaps, torch.full_like(gaps, gaps[0].item()))
    torch.testing.assert_close(symexp(bins.centers[-1]), torch.tensor(1e5), rtol=1e-5, atol=0)


def test_the_decoded_value_of_a_coin_flip_falls_further_below_its_mean_at_larger_scales() -> None:
    """What the rescaling test runs into (docs/results/barrier.md): a value is symexp of the
    expected symlog, a concave utility, so a 0-or-c coin flip is worth less than c/2, and far
    less when c is large. x100 rewards make risky (exploring) actions look worse."""
    bins = TwoHotBins(64).double()
    share = []
    for c in (1.0, 10.0, 1000.0, 100_000.0):
        flip = bins.encode(torch.tensor([0.0, c], dtype=torch.float64)).mean(0)
        share.append(bins.decode_probs(flip).item() / (c / 2))
    assert 0.75 < share[0] < 0.9 and share[1] < 0.5 and share[2] < 0.07 and share[3] < 0.01
    assert share == sorted(share, reverse=True)


def test_the_mean_decode_values_a_coin_flip_at_its_mean_on_every_scale() -> None:
    """critic_decode="mean": the expected raw bin value is risk-neutral, so a 0-or-c coin flip is
    worth ~c/2 (two-hot interpolates in symlog space: a few % above it), and it beats a sure c/3
    at every scale, where the symlog decode prefers the sure thing from c = 10 up."""
    mean, sym = TwoHotBins(64, decode="mean").double(), TwoHotBins(64).double()
    for c in (1.0, 10.0, 1000.0, 100_000.0):
        flip = mean.encode(torch.tensor([0.0, c], dtype=torch.float64)).mean(0)
        sure = mean.encode(torch.tensor(c / 3, dtype=torch.float64))
        assert 1.0 <= mean.decode_probs(flip).item() / (c / 2) < 1.05
        assert mean.decode_probs(flip) > mean.decode_probs(sure)
        if c >= 10:
            assert sym.decode_probs(flip) < sym.decode_probs(sure)


def test_the_trimmed_decode_ignores_a_noise_floor_on_far_bins_but_keeps_a_real_gamble() -> None:
    """What a shared critic does in a mix (docs/results/barrier.md): a small task's value (~3)
    carries a softmax leak of ~1 % spread over the far bins that a big-reward task uses. The mean
    read-out adds that leak times up to 1e5; the trimmed one drops bins under a quarter of the
    uniform share, yet still values a 10 %-chance-of-c gamble at its mean."""
    mean, trim = TwoHotBins(32, decode="mean").double(), TwoHotBins(32, decode="trimmed").double()
    far = (trim.values > 100).double()
    leak = 0.01 * far / far.sum()  # (B,) 1 % of the mass, evenly over the far bins
    clean = trim.encode(torch.tensor(3.0, dtype=torch.float64))
    probs = 0.99 * clean + leak
    assert mean.decode_probs(probs) > 100  # swamped
    assert trim.decode_probs(probs).item() == pytest.approx(mean.decode_probs(clean).item())
    for c in (10.0, 1000.0, 100_000.0):
        gamble = torch.tensor([0.9, 0.1], dtype=torch.float64) @ trim.encode(
            torch.tensor([0.0, c], dtype=torch.float64)
        )
        assert trim.decode_probs(gamble).item() == pytest.approx(mean.decode_probs(gamble).item())
        assert 0.099 * c < trim.decode_probs(gamble).item() < 0.11 * c


def test_an_unknown_decode_is_rejected() -> None:
    with pytest.raises(ValueError, match="decode must be one of"):
        TwoHotBins(8, decode="median")


def test_projecting_a_distribution_is_the_mixture_of_its_values_two_hot_labels() -> None:
    bins = TwoHotBins(32).double()
    g = torch.Generator().manual_seed(0)
    y = symexp(torch.randn(5, 7, generator=g, dtype=torch.float64) * 4)  # (5, K=7) raw values
    probs = torch.softmax(torch.randn(5, 7, generator=g, dtype=torch.float64), -1)
    labels = bins.project(y, probs)  # (5, 32)
    torch.testing.assert_close(labels, (probs[..., None] * bins.encode(y)).sum(-2))
    torch.testing.assert_close(labels.sum(-1), torch.ones(5, dtype=torch.float64))
