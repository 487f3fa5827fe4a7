"""Channel impairments: measured statistics match their closed forms; seeding; parameter validation."""

from __future__ import annotations

import math

import pytest
import torch

from llmsplit_env.llm.channel import (
    AnalogChannel,
    DigitalChannel,
    ErasureChannel,
    make_channel,
    nakagami_gains,
)


def hidden(batch=4, tokens=3000, d=64, seed=123) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # Token vectors of very different power, as in a real LLM (massive activations on some tokens).
    scale = torch.exp(torch.randn(batch, tokens, 1, generator=g) * 1.5)
    return torch.randn(batch, tokens, d, generator=g) * scale


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_nakagami_gains_have_unit_mean_and_variance_one_over_m():
    for m in (1.0, 2.0, 4.0):
        g = nakagami_gains((200_000,), m, gen(0))
        assert abs(float(g.mean()) - 1.0) < 0.01
        assert abs(float(g.var()) - 1.0 / m) < 0.02 / m


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 25.0])
def test_analog_noise_power_matches_formula(snr_db):
    h = hidden()
    tx = AnalogChannel(snr_db, m=2.0).transmit(h, gen(1))
    noise = tx.hidden - h
    power = h.pow(2).mean(-1)
    expected = power / (10 ** (snr_db / 10) * tx.gain)  # per token, given its fading gain
    ratio = noise.pow(2).mean(-1) / expected
    assert abs(float(ratio.mean()) - 1.0) < 0.01
    # Unconditionally, E[1/g] = m / (m - 1) for Gamma(m, 1/m) gains: 3 dB of ZF noise enhancement at m = 2.
    unconditional = float((noise.pow(2).mean(-1) / power).mean()) * 10 ** (snr_db / 10)
    assert abs(unconditional - 2.0) < 0.25
    assert tx.loss_fraction == 0.0


def test_analog_noise_is_gaussian_and_zero_mean():
    h = torch.ones(1, 20_000, 16)
    noise = AnalogChannel(10.0, m=1e4).transmit(h, gen(2)).hidden - h  # m -> inf: no fading
    assert abs(float(noise.mean())) < 0.003
    assert abs(float(noise.std()) - math.sqrt(0.1)) < 0.003
    kurtosis = float((noise**4).mean() / noise.pow(2).mean() ** 2)
    assert abs(kurtosis - 3.0) < 0.1


@pytest.mark.parametrize(("snr_db", "m"), [(0.0, 1.0), (5.0, 2.0), (10.0, 2.0), (3.0, 4.0)])
def test_digital_packet_loss_rate_matches_outage_probability(snr_db, m):
    ch = DigitalChannel(snr_db, m=m)
    h = hidden(tokens=20_000, d=8)
    tx = ch.transmit(h, gen(3))
    p = ch.expected_loss_fraction()
    n = h.shape[0] * h.shape[1]
    assert abs(tx.loss_fraction - p) < 4 * math.sqrt(p * (1 - p) / n) + 1e-9
    lost = (tx.hidden == 0).all(-1)
    assert abs(float(lost.float().mean()) - tx.loss_fraction) < 1e-9
    expected_lost = snr_db + 10 * torch.log10(tx.gain) < ch.threshold_db
    assert torch.equal(lost, expected_lost)


def test_digital_quantisation_error_is_within_half_a_step():
    ch = DigitalChannel(60.0, bits=6)  # no outage at 60 dB
    h = hidden(tokens=500)
    out = ch.transmit(h, gen(4)).hidden
    step = h.abs().amax(-1, keepdim=True) / (2**5 - 1)
    assert torch.all((out - h).abs() <= step / 2 + 1e-5)
    assert len(torch.unique(out[0, 0])) <= 2**6 - 1


@pytest.mark.parametrize("rho", [0.0, 0.05, 0.3])
def test_erasure_rate_matches_rho_without_rescaling(rho):
    h = hidden(tokens=2000) + 10.0  # no element is zero before the channel
    tx = ErasureChannel(rho).transmit(h, gen(5))
    erased = tx.hidden == 0
    n = erased.numel()
    assert abs(float(erased.float().mean()) - rho) < 4 * math.sqrt(rho * (1 - rho) / n) + 1e-9
    assert torch.equal(tx.hidden[~erased], h[~erased])  # survivors are not rescaled (paper parity)
    assert tx.loss_fraction == pytest.approx(float(erased.float().mean()))


@pytest.mark.parametrize("channel", [AnalogChannel(5.0), DigitalChannel(5.0), ErasureChannel(0.1)], ids=repr)
def test_same_seed_same_draw_and_different_seeds_differ(channel):
    h = hidden(tokens=200)
    a, b, c = (channel.transmit(h, gen(s)).hidden for s in (7, 7, 8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_draws_do_not_depend_on_dtype():
    h = hidden(tokens=300)
    a = AnalogChannel(10.0).transmit(h, gen(9)).hidden
    b = AnalogChannel(10.0).transmit(h.to(torch.bfloat16), gen(9)).hidden
    assert b.dtype == torch.bfloat16
    assert torch.allclose(a, b.float(), rtol=0.03, atol=0.03 * float(h.abs().max()))


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda: AnalogChannel(float("nan")), "snr_db"),
        (lambda: AnalogChannel(10.0, m=0.2), "m (Nakagami shape)"),
        (lambda: DigitalChannel(10.0, bits=0), "bits"),
        (lambda: DigitalChannel(10.0, bits=8.0), "bits"),
        (lambda: ErasureChannel(1.5), "rho"),
        (lambda: ErasureChannel("x"), "rho"),
        (lambda: make_channel("optical", 3.0), "unknown channel scheme 'optical'; allowed: analog, digital, erasure"),
        (lambda: make_channel("erasure", 0.1, m=2.0), "erasure channel takes no parameters"),
    ],
)
def test_bad_parameters_raise_clear_errors(make, needle):
    with pytest.raises(ValueError, match=None) as err:
        make()
    assert needle in str(err.value)


def test_bad_tensors_and_generators_raise():
    with pytest.raises(ValueError, match=r"\[batch, tokens, d\]"):
        AnalogChannel(10.0).transmit(torch.zeros(3, 4), gen(0))
    with pytest.raises(ValueError, match=r"CPU torch\.Generator"):
        AnalogChannel(10.0).transmit(torch.zeros(1, 3, 4), None)
