"""Closed-form link formulas, torch-free: uplink payload, Shannon airtime and Nakagami-m outage.

Used by the environment (latency component) and by `llmsplit_env.llm.channel` (the digital scheme's outage), so the two
can never disagree. `shannon_airtime` and `nakagami_outage_probability` check their arguments; `airtime_s` is the
unchecked formula for the env's hot loop, for a float (``math``) or an array (numpy) alike.
"""

from __future__ import annotations

import math

import numpy as np


def check_finite(name: str, value: float, lo: float, hi: float) -> float:
    """``value`` as a float, or ``ValueError`` naming ``name`` unless it is finite and in ``[lo, hi]``."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [{lo}, {hi}], got {value!r}") from None
    if not (math.isfinite(value) and lo <= value <= hi):
        raise ValueError(f"{name} must be a finite number in [{lo}, {hi}], got {value!r}")
    return value


def check_snr_db(snr_db: float) -> float:
    return check_finite("snr_db", snr_db, -50.0, 100.0)


def check_rho(rho: float) -> float:
    return check_finite("rho", rho, 0.0, 1.0)


def check_nakagami_m(m: float) -> float:
    return check_finite("m (Nakagami shape)", m, 0.5, 1e4)


def check_bits(bits: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 16:
        raise ValueError(f"bits must be an integer in [1, 16], got {bits!r}")
    return int(bits)


def check_threshold_db(threshold_db: float) -> float:
    return check_finite("threshold_db", threshold_db, -50.0, 100.0)


#: per scheme: the level's check and the checks of the parameters its channel class takes
_CHANNEL_CHECKS = {
    "analog": (check_snr_db, {"m": check_nakagami_m}),
    "digital": (check_snr_db, {"m": check_nakagami_m, "bits": check_bits, "threshold_db": check_threshold_db}),
    "erasure": (check_rho, {}),
}


def check_channel_args(scheme: str, level: float, **params) -> tuple[float, dict]:
    """Validate a channel's level and parameters exactly as its class in `llmsplit_env.llm.channel` does, without torch:
    the checked ``(level, params)``, or ``ValueError`` naming the bad one."""
    if scheme not in _CHANNEL_CHECKS:
        raise ValueError(f"unknown channel scheme {scheme!r}; allowed: {', '.join(_CHANNEL_CHECKS)}")
    check_level, checks = _CHANNEL_CHECKS[scheme]
    unknown = sorted(set(params) - set(checks))
    if unknown:
        if not checks:
            raise ValueError(f"{scheme} channel takes no parameters besides {check_level.__name__[6:]}, got {unknown}")
        raise ValueError(f"{scheme} channel takes parameters {', '.join(checks)} besides the level; got {unknown}")
    return check_level(level), {k: checks[k](v) for k, v in params.items()}


def payload_bits(num_tokens: int, hidden_size: int, bits: int = 8, scale_bits: int = 32) -> int:
    """Uplink payload of ``num_tokens`` token vectors, each ``hidden_size`` b-bit values plus one scale."""
    for name, v, lo in (("num_tokens", num_tokens, 0), ("hidden_size", hidden_size, 1), ("bits", bits, 1)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    if isinstance(scale_bits, bool) or not isinstance(scale_bits, (int, np.integer)) or scale_bits < 0:
        raise ValueError(f"scale_bits must be an integer >= 0, got {scale_bits!r}")
    return int(num_tokens) * (int(hidden_size) * int(bits) + int(scale_bits))


def airtime_s(bits: float, bandwidth_hz: float, snr_db):
    """``bits / (B·log2(1 + 10^(γ̄/10)))`` for a float or an array ``snr_db`` (unchecked)."""
    if isinstance(snr_db, np.ndarray):
        return bits / (bandwidth_hz * np.log2(1.0 + 10.0 ** (snr_db / 10.0)))
    return bits / (bandwidth_hz * math.log2(1.0 + 10.0 ** (snr_db / 10.0)))


def shannon_airtime(bits: float, bandwidth_hz: float, snr_db: float) -> float:
    """Seconds to send ``bits`` at the Shannon rate ``B·log2(1 + γ̄)``."""
    bits = check_finite("bits", bits, 0.0, 1e18)
    bandwidth_hz = check_finite("bandwidth_hz", bandwidth_hz, 1e-9, 1e15)
    snr_db = check_finite("snr_db", snr_db, -100.0, 200.0)
    return airtime_s(bits, bandwidth_hz, snr_db)


def regularized_lower_gamma(a: float, x: float) -> float:
    """``P(a, x) = γ(a, x) / Γ(a)`` to about 1e-14: the series for ``x < a + 1``, else Lentz's continued fraction for
    ``Q = 1 − P`` (Numerical Recipes, §6.2)."""
    if a <= 0.0 or x < 0.0:
        raise ValueError(f"need a > 0 and x >= 0, got a={a!r}, x={x!r}")
    if x == 0.0:
        return 0.0
    log_prefactor = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1.0:
        term = total = 1.0 / a
        n = a
        for _ in range(10_000):
            n += 1.0
            term *= x / n
            total += term
            if abs(term) < abs(total) * 1e-16:
                break
        return min(1.0, total * math.exp(log_prefactor))
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-16:
            break
    return max(0.0, 1.0 - math.exp(log_prefactor) * h)


def nakagami_outage_probability(snr_db: float, threshold_db: float, m: float = 2.0) -> float:
    """``P(γ̄·g < γ_th)`` for ``g ~ Gamma(m, 1/m)``: the regularised lower incomplete gamma ``P(m, m·γ_th/γ̄)``."""
    snr_db = check_finite("snr_db", snr_db, -100.0, 200.0)
    threshold_db = check_finite("threshold_db", threshold_db, -100.0, 200.0)
    m = check_finite("m (Nakagami shape)", m, 0.5, 1e4)
    return regularized_lower_gamma(m, m * 10.0 ** ((threshold_db - snr_db) / 10.0))
