"""Within-step channel impairments applied to the transmitted hidden states ``H_k``.

Each class corrupts a ``[batch, tokens, d]`` tensor with a caller-supplied CPU ``torch.Generator``. Random draws are
always made on the CPU in float32 and then moved to the tensor's device and dtype, so a seed gives the same
realisation on every device and in every dtype.

A *packet* is one token's vector: block fading and packet loss act per token.

| class            | level     | what happens to a token vector ``h_t``                                       |
|------------------|-----------|------------------------------------------------------------------------------|
| `AnalogChannel`  | SNR (dB)  | ``h_t + n_t``, ``n_t ~ N(0, P_t / (γ̄ g_t))``, ``g_t ~ Gamma(m, 1/m)``        |
| `DigitalChannel` | SNR (dB)  | b-bit per-token quantisation; zeros when ``γ̄ g_t`` < threshold (outage)     |
| `ErasureChannel` | ρ         | every element zeroed independently with probability ρ (no rescaling)        |

``P_t`` is the token vector's mean power, so the AWGN is power-normalised: a noiseless equaliser after block fading
leaves noise of variance ``P_t / (γ̄ g_t)``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

# The closed forms live in the torch-free `llmsplit_env.link` (the env uses them too); re-exported here.
from llmsplit_env.link import (
    check_bits,
    check_channel_args,
    check_nakagami_m,
    check_rho,
    check_snr_db,
    check_threshold_db,
    nakagami_outage_probability,
    payload_bits,
    shannon_airtime,
)

SCHEMES = ("analog", "digital", "erasure")
__all__ = [
    "SCHEMES",
    "AnalogChannel",
    "Channel",
    "DigitalChannel",
    "ErasureChannel",
    "Transmission",
    "make_channel",
    "nakagami_gains",
    "nakagami_outage_probability",
    "payload_bits",
    "shannon_airtime",
]


@dataclass(frozen=True)
class Transmission:
    """What arrives at the edge: the received hidden states and what was lost on the way."""

    hidden: torch.Tensor
    #: fraction of packets (analog/digital: tokens) or elements (erasure) that arrived as zeros
    loss_fraction: float
    #: per-token fading power gains ``[batch, tokens]`` (``None`` for channels without fading)
    gain: torch.Tensor | None = None


def _check_hidden(h: torch.Tensor) -> None:
    if not isinstance(h, torch.Tensor) or h.ndim != 3:
        shape = tuple(h.shape) if isinstance(h, torch.Tensor) else type(h).__name__
        raise ValueError(f"hidden states must be a [batch, tokens, d] tensor, got {shape}")


def _check_generator(generator: torch.Generator) -> None:
    if not isinstance(generator, torch.Generator) or generator.device.type != "cpu":
        raise ValueError("generator must be a CPU torch.Generator (draws are made on the CPU for reproducibility)")


def nakagami_gains(shape: tuple[int, ...], m: float, generator: torch.Generator) -> torch.Tensor:
    """Power gains ``g ~ Gamma(m, 1/m)`` (unit mean) of Nakagami-m block fading, on the CPU in float32."""
    return torch._standard_gamma(torch.full(shape, float(m)), generator=generator) / float(m)


class Channel(ABC):
    """A within-step impairment of the transmitted hidden states."""

    #: scheme name used by profiles and configs
    scheme: str
    #: name of the scalar that sets the channel's quality (``snr_db`` or ``rho``)
    level_name: str

    @property
    @abstractmethod
    def level(self) -> float:
        """The channel's quality level (SNR in dB, or erasure probability)."""

    @abstractmethod
    def params(self) -> dict[str, float]:
        """Scheme parameters other than the level (stored in profile metadata)."""

    @abstractmethod
    def transmit(self, hidden: torch.Tensor, generator: torch.Generator) -> Transmission:
        """Corrupt ``hidden`` (``[batch, tokens, d]``) with draws from ``generator``."""

    @abstractmethod
    def expected_loss_fraction(self) -> float:
        """Closed-form mean of `Transmission.loss_fraction`."""

    def __call__(self, hidden: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.transmit(hidden, generator).hidden

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in {self.level_name: self.level, **self.params()}.items())
        return f"{type(self).__name__}({args})"


class FadingChannel(Channel, ABC):
    """A channel set by its mean SNR ``γ̄`` (dB) over Nakagami-m block fading (one gain per token)."""

    level_name = "snr_db"

    def __init__(self, snr_db: float, m: float = 2.0) -> None:
        self.snr_db = check_snr_db(snr_db)
        self.m = check_nakagami_m(m)

    @property
    def level(self) -> float:
        return self.snr_db


class AnalogChannel(FadingChannel):
    """Power-normalised uncoded (analog) transmission over Nakagami-m block fading with AWGN."""

    scheme = "analog"

    def params(self) -> dict[str, float]:
        return {"m": self.m}

    def transmit(self, hidden: torch.Tensor, generator: torch.Generator) -> Transmission:
        _check_hidden(hidden)
        _check_generator(generator)
        b, t, d = hidden.shape
        gain = nakagami_gains((b, t), self.m, generator)
        noise = torch.randn((b, t, d), generator=generator)
        h32 = hidden.float()
        power = h32.pow(2).mean(dim=-1, keepdim=True)
        snr = 10.0 ** (self.snr_db / 10.0)
        std = (power / (snr * gain.to(hidden.device).unsqueeze(-1))).sqrt()
        out = h32 + std * noise.to(hidden.device)
        return Transmission(out.to(hidden.dtype), 0.0, gain)

    def expected_loss_fraction(self) -> float:
        return 0.0


class DigitalChannel(FadingChannel):
    """Per-token b-bit quantisation; a packet in outage (``γ̄·g`` under the threshold) arrives as zeros.

    The default threshold, ``10·log10(2² − 1) ≈ 4.77 dB``, is the Shannon threshold of a 2 bit/s/Hz link.
    """

    scheme = "digital"

    def __init__(self, snr_db: float, m: float = 2.0, bits: int = 8, threshold_db: float = 10 * math.log10(3.0)):
        super().__init__(snr_db, m)
        self.bits = check_bits(bits)
        self.threshold_db = check_threshold_db(threshold_db)

    def params(self) -> dict[str, float]:
        return {"m": self.m, "bits": self.bits, "threshold_db": self.threshold_db}

    def quantise(self, hidden: torch.Tensor) -> torch.Tensor:
        """Symmetric uniform b-bit quantisation with one scale per token (its max magnitude)."""
        h32 = hidden.float()
        levels = 2 ** (self.bits - 1) - 1 if self.bits > 1 else 1
        scale = h32.abs().amax(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny) / levels
        return (h32 / scale).round().clamp(-levels, levels) * scale

    def transmit(self, hidden: torch.Tensor, generator: torch.Generator) -> Transmission:
        _check_hidden(hidden)
        _check_generator(generator)
        b, t, _ = hidden.shape
        gain = nakagami_gains((b, t), self.m, generator)
        received = self.snr_db + 10.0 * torch.log10(gain)
        lost = received < self.threshold_db
        out = self.quantise(hidden) * (~lost).to(hidden.device).unsqueeze(-1)
        return Transmission(out.to(hidden.dtype), float(lost.float().mean()), gain)

    def expected_loss_fraction(self) -> float:
        return nakagami_outage_probability(self.snr_db, self.threshold_db, self.m)


class ErasureChannel(Channel):
    """The paper's "probabilistic signal dropout": each element zeroed with probability ρ, no rescaling."""

    scheme = "erasure"
    level_name = "rho"

    def __init__(self, rho: float) -> None:
        self.rho = check_rho(rho)

    @property
    def level(self) -> float:
        return self.rho

    def params(self) -> dict[str, float]:
        return {}

    def transmit(self, hidden: torch.Tensor, generator: torch.Generator) -> Transmission:
        _check_hidden(hidden)
        _check_generator(generator)
        erased = torch.rand(hidden.shape, generator=generator) < self.rho
        out = hidden.masked_fill(erased.to(hidden.device), 0.0)
        return Transmission(out, float(erased.float().mean()), None)

    def expected_loss_fraction(self) -> float:
        return self.rho


def make_channel(scheme: str, level: float, **params: float) -> Channel:
    """Build a channel by scheme name: ``analog``/``digital`` take ``snr_db``, ``erasure`` takes ``rho``.

    Its arguments are checked by `llmsplit_env.link.check_channel_args` (torch-free: the profile builder checks
    its command line with it before it imports torch)."""
    check_channel_args(scheme, level, **params)
    if scheme == "analog":
        return AnalogChannel(level, **params)
    if scheme == "digital":
        return DigitalChannel(level, **params)
    return ErasureChannel(level)
