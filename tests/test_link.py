"""Closed-form link formulas (`llmsplit_env.link`): values, array/float agreement, validation, no torch."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from llmsplit_env.link import (
    airtime_s,
    nakagami_outage_probability,
    payload_bits,
    regularized_lower_gamma,
    shannon_airtime,
)


def test_closed_forms():
    # Rayleigh (m = 1): P_out = 1 - exp(-gamma_th / gamma_bar)
    assert nakagami_outage_probability(10.0, 0.0, m=1.0) == pytest.approx(1 - math.exp(-0.1), rel=1e-12)
    # Nakagami-2 at x = m * gamma_th / gamma_bar = 2: P(2, 2) = 1 - 3 e^-2
    assert nakagami_outage_probability(0.0, 0.0, m=2.0) == pytest.approx(1 - 3 * math.exp(-2), rel=1e-12)
    assert nakagami_outage_probability(40.0, 0.0) < 1e-7
    assert payload_bits(2048, 576, bits=8, scale_bits=32) == 2048 * (576 * 8 + 32)
    assert shannon_airtime(1e6, 1e6, 10 * math.log10(3.0)) == pytest.approx(0.5)


@pytest.mark.parametrize("a", [0.5, 1.0, 2.0, 3.5, 10.0, 100.0])
def test_regularized_lower_gamma_matches_torch(a):
    torch = pytest.importorskip("torch")
    xs = [0.0, 1e-6, 0.01, 0.3, 1.0, 2.0, 5.0, 20.0, 99.0, 100.0, 101.0, 400.0]
    for x in xs:
        want = float(torch.special.gammainc(torch.tensor(a, dtype=torch.float64), torch.tensor(x, dtype=torch.float64)))
        assert regularized_lower_gamma(a, x) == pytest.approx(want, abs=1e-9), (a, x)


def test_airtime_is_the_same_formula_for_floats_and_arrays():
    snr = np.array([-10.0, 0.0, 4.77, 20.0, 35.0])
    arr = airtime_s(1e6, 10e6, snr)
    assert arr.shape == (5,)
    for s, t in zip(snr.tolist(), arr.tolist(), strict=True):
        assert t == pytest.approx(airtime_s(1e6, 10e6, s), rel=1e-15)
        assert t == pytest.approx(1e6 / (10e6 * math.log2(1 + 10 ** (s / 10))), rel=1e-15)


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: shannon_airtime(1.0, 0.0, 10.0), "bandwidth_hz"),
        (lambda: shannon_airtime(1.0, 1e6, float("nan")), "snr_db"),
        (lambda: payload_bits(-1, 4), "num_tokens"),
        (lambda: payload_bits(4, 4, bits=True), "bits"),
        (lambda: payload_bits(4, 4, scale_bits=-1), "scale_bits"),
        (lambda: nakagami_outage_probability(10.0, 0.0, m=0.1), "m (Nakagami shape)"),
        (lambda: regularized_lower_gamma(0.0, 1.0), "a > 0"),
    ],
)
def test_bad_arguments_raise_naming_them(call, needle):
    with pytest.raises(ValueError) as err:
        call()
    assert needle in str(err.value)


def test_link_and_env_modules_do_not_import_torch():
    code = (
        "import sys, gymnasium as gym, llmsplit_env, llmsplit_env.link, llmsplit_env.problem;"
        "env = gym.make('LLMSplit-v0'); env.reset(seed=0); env.step(0);"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"
