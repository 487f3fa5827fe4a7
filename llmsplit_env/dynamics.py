"""Channel dynamics between environment steps: how the link's mean quality level evolves and what the agent sees.

Pluggable, seeded classes in the spirit of mobile-env: a `ChannelDynamics` owns the *true* mean level of the link
(mean SNR ``γ̄_t`` in dB, or the erasure probability ρ) and the agent's *estimate* of it. The within-step fading
(Nakagami-m, see `llm.channel`) is not simulated here: it is inside the quality backend (the shipped profiles
were measured with it, the live backend draws it); `MobilityChannel.nakagami_m` carries its parameter.

| class               | level   | evolution between steps                                                          |
|---------------------|---------|----------------------------------------------------------------------------------|
| `MobilityChannel`   | SNR dB  | Gauss-Markov UE mobility in a cell, log-distance path loss, Gudmundson shadowing |
| `StaticChannel`     | any     | level ~ U(low, high) at reset, constant within the episode                        |
| `PaperErasureDrift` | ρ       | ρ ~ U(0.01, 0.3) at reset, ×(1 ± 0.0005·|move|) per step (the authors' env)      |

Randomness: the env draws everything an episode's first block of steps needs in one call,
``rng.standard_normal(n)``: `reset(z)` consumes the first ``reset_normals`` of them (uniforms and angles come from
pairs of normals: ``exp(−(z₁² + z₂²)/2)`` is exactly U(0, 1] and ``atan2(z₂, z₁)`` exactly uniform on (−π, π]), and
`advance(z)` consumes one pre-drawn row of normals per step (columns `Z_SPEED`, `Z_HEADING`, `Z_SHADOW`, `Z_CSI`).
One generator call per reset is what lets the batched vector env reset a thousand sub-envs, each from its own
generator, cheaply, and reproduce a single env's trajectory exactly. Every class has a scalar path (plain floats and
`math`, used by `LLMSplitEnv.step`) and a batch path (`reset_batch`, `advance_batch`: numpy over ``[N]`` arrays,
used by the vector env); the two implement the same equations side by side.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: columns of a per-step noise row (standard normals); `Z_QUALITY` (the log-PPL draw) and `Z_LOSS` (the realised lost
#: fraction, see `llmsplit_env.quality.backends.realised_loss`) are used by the quality backend
Z_SPEED, Z_HEADING, Z_SHADOW, Z_CSI, Z_QUALITY, Z_LOSS = range(6)
NOISE_COLUMNS = 6


def uniform_from_normals(z1, z2):
    """``exp(−(z₁² + z₂²)/2)`` ~ U(0, 1] for independent standard normals (a χ²₂ is exponential); floats or arrays."""
    if isinstance(z1, float):
        return math.exp(-0.5 * (z1 * z1 + z2 * z2))
    return np.exp(-0.5 * (z1 * z1 + z2 * z2))


class ChannelDynamics(ABC):
    """Evolution of the link's mean level between steps, and the agent's noisy estimate of it."""

    #: ``"snr_db"`` or ``"rho"`` (must match the quality backend's level)
    level_name: str
    #: names of the float state variables (`get_state` order; the vector env keeps one array per name)
    state_names: tuple[str, ...]
    #: standard deviation of the estimation error on the observed level (level units)
    csi_error: float = 0.0

    #: how many standard normals `reset` consumes
    reset_normals: int = 3

    level: float  # true mean level now
    estimate: float  # what the agent observes

    @abstractmethod
    def reset(self, z: Sequence[float]) -> None:
        """The episode's initial state and estimate from ``reset_normals`` pre-drawn standard normals ``z``."""

    def on_action(self, move: int) -> None:
        """Action-coupled change of the level when the split moves by ``move`` layers (before the step's reward)."""
        return None  # exogenous channels: the split does not move the link

    def level_after(self, move: int) -> float:
        """The level `on_action(move)` would produce (for expected rewards); no change by default."""
        return self.level

    @abstractmethod
    def advance(self, z: Sequence[float]) -> None:
        """Exogenous evolution to the next step, using one noise row ``z``; updates ``level`` and ``estimate``."""

    def get_state(self) -> tuple[float, ...]:
        return tuple(getattr(self, n) for n in self.state_names)

    def set_state(self, values: Sequence[float]) -> None:
        for n, v in zip(self.state_names, values, strict=True):
            setattr(self, n, float(v))

    # --- batch path (vector env) --------------------------------------------------------------------------------

    @abstractmethod
    def reset_batch(self, state: dict[str, np.ndarray], idx: np.ndarray, z: np.ndarray) -> None:
        """Batched `reset` of the sub-envs ``idx`` from normals ``z`` ``[reset_normals, len(idx)]``."""

    def on_action_batch(self, state: dict[str, np.ndarray], move: np.ndarray) -> None:
        """Batched `on_action` on state arrays (in place)."""
        return None

    @abstractmethod
    def advance_batch(self, state: dict[str, np.ndarray], z: np.ndarray) -> None:
        """Batched `advance` on state arrays ``{name: [N]}`` with noise ``z`` ``[NOISE_COLUMNS, N]`` (in place)."""

    def describe(self) -> dict:
        return {"class": type(self).__name__}


# --- building blocks of the mobility channel ------------------------------------------------------------------------


@dataclass
class GaussMarkovMobility:
    """Gauss-Markov speed and heading (Liang & Haas) in a disc cell, reflected at the edge.

    ``v' = α v + (1−α) v̄ + σ_v √(1−α²) z₁`` (clipped to ``[0, 3 v̄]``), ``θ' = α θ + (1−α) θ̄ + σ_θ √(1−α²) z₂``,
    then the UE moves ``v'·dt`` along ``θ'``. Crossing the edge mirrors the position back inside and turns both the
    heading and its mean by π (the user walks back into the cell). Reset: uniform position in the disc (users are
    uniform over the area), uniform mean heading, ``θ = θ̄``, ``v = v̄``.
    """

    cell_radius: float = 200.0  # m
    mean_speed: float = 3.0  # m/s
    speed_std: float = 1.0  # m/s
    heading_std: float = 0.5  # rad
    memory: float = 0.9  # α, per step
    dt: float = 1.0  # s per env step


@dataclass
class LogDistancePathLoss:
    """Mean SNR from distance: ``γ̄(d) = snr_ref_db − 10·n·log10(max(d, d₀)/d₀)``.

    ``snr_ref_db`` folds transmit power, antenna gains, the path loss at ``d₀`` and the noise power into one number.
    """

    snr_ref_db: float = 50.0  # mean SNR at d0
    ref_distance: float = 10.0  # d0, m (also the closest distance: the site is on a mast)
    exponent: float = 3.53  # n: 3GPP TR 38.901 UMi street canyon NLOS (35.3·log10 d)

    def snr_db(self, distance: float) -> float:
        return self.snr_ref_db - 10.0 * self.exponent * math.log10(max(distance, self.ref_distance) / self.ref_distance)


@dataclass
class GudmundsonShadowing:
    """Log-normal shadowing correlated in distance: ``s' = ρ s + √(1−ρ²) σ z``, ``ρ = exp(−Δd / d_corr)``."""

    sigma_db: float = 7.82  # 3GPP TR 38.901 UMi NLOS
    decorrelation_m: float = 13.0  # 3GPP TR 38.901 UMi NLOS


class MobilityChannel(ChannelDynamics):
    """Mean SNR of a moving UE: mobility → distance → path loss + shadowing; the agent sees it with CSI error.

    ``level = γ̄(d) + s`` (dB). ``estimate = level + csi_error·z`` (pilot-based estimation error, dB). Within a step
    the link also fades (Nakagami-``nakagami_m`` block fading per packet), which the quality backend accounts for.
    """

    level_name = "snr_db"
    state_names = ("x", "y", "speed", "heading", "mean_heading", "shadow", "level", "estimate")

    def __init__(
        self,
        mobility: GaussMarkovMobility | None = None,
        path_loss: LogDistancePathLoss | None = None,
        shadowing: GudmundsonShadowing | None = None,
        csi_error: float = 1.0,
        nakagami_m: float = 2.0,
    ) -> None:
        self.mobility = mobility or GaussMarkovMobility()
        self.path_loss = path_loss or LogDistancePathLoss()
        self.shadowing = shadowing or GudmundsonShadowing()
        self.csi_error = float(csi_error)
        self.nakagami_m = float(nakagami_m)
        mob = self.mobility
        # constants of the per-step update, computed once (step() stays lean)
        self._a = mob.memory
        self._speed_drift = (1.0 - mob.memory) * mob.mean_speed
        self._speed_noise = mob.speed_std * math.sqrt(1.0 - mob.memory**2)
        self._heading_noise = mob.heading_std * math.sqrt(1.0 - mob.memory**2)
        self._max_speed = 3.0 * mob.mean_speed
        self._pl_scale = 10.0 * self.path_loss.exponent
        # the scalar update's constants in the order `advance` unpacks them (the batch update reads the ones above)
        pl, sh = self.path_loss, self.shadowing
        self._advance_constants = (
            self._a, self._speed_drift, self._speed_noise, self._max_speed, 1.0 - mob.memory, self._heading_noise,
            mob.dt, mob.cell_radius, sh.decorrelation_m, sh.sigma_db, pl.ref_distance, pl.snr_ref_db, self._pl_scale,
        )  # fmt: skip
        self.x = self.y = self.speed = self.heading = self.mean_heading = self.shadow = 0.0
        self.level = self.estimate = 0.0

    @property
    def distance(self) -> float:
        return math.hypot(self.x, self.y)

    def _snr(self, r: float, shadow: float) -> float:
        pl = self.path_loss
        return pl.snr_ref_db - self._pl_scale * math.log10(max(r, pl.ref_distance) / pl.ref_distance) + shadow

    reset_normals = 6

    def reset(self, z: Sequence[float]) -> None:
        # position uniform over the disc's area: radius R·√u, u ~ U(0, 1]; angle uniform
        r = self.mobility.cell_radius * math.sqrt(uniform_from_normals(z[0], z[1]))
        phi = math.atan2(z[1], z[0])
        self.x, self.y = r * math.cos(phi), r * math.sin(phi)
        self.mean_heading = self.heading = math.atan2(z[3], z[2])
        self.speed = self.mobility.mean_speed
        self.shadow = self.shadowing.sigma_db * z[4]  # stationary N(0, σ²)
        self.level = self._snr(r, self.shadow)
        self.estimate = self.level + self.csi_error * z[5]

    def reset_batch(self, state: dict[str, np.ndarray], idx: np.ndarray, z: np.ndarray) -> None:
        r = self.mobility.cell_radius * np.sqrt(uniform_from_normals(z[0], z[1]))
        phi = np.arctan2(z[1], z[0])
        state["x"][idx], state["y"][idx] = r * np.cos(phi), r * np.sin(phi)
        heading = np.arctan2(z[3], z[2])
        state["mean_heading"][idx] = heading
        state["heading"][idx] = heading
        state["speed"][idx] = self.mobility.mean_speed
        shadow = self.shadowing.sigma_db * z[4]
        state["shadow"][idx] = shadow
        pl = self.path_loss
        level = pl.snr_ref_db - self._pl_scale * np.log10(np.maximum(r, pl.ref_distance) / pl.ref_distance) + shadow
        state["level"][idx] = level
        state["estimate"][idx] = level + self.csi_error * z[5]

    def advance(self, z: Sequence[float]) -> None:
        # The env's hot loop: constants cached in __init__ and read in one unpacking; the same operations, in the
        # same order, as `advance_batch`.
        a, drift, noise_v, max_v, one_minus_a, noise_h, dt, R, decor, sigma, ref, snr_ref, pl = self._advance_constants
        speed = a * self.speed + drift + noise_v * z[0]
        speed = 0.0 if speed < 0.0 else (max_v if speed > max_v else speed)
        heading = a * self.heading + one_minus_a * self.mean_heading + noise_h * z[1]
        step = speed * dt
        x = self.x + step * math.cos(heading)
        y = self.y + step * math.sin(heading)
        r = math.hypot(x, y)
        if r > R:  # mirror back inside and walk back into the cell
            f = (2.0 * R - r) / r
            x, y = x * f, y * f
            r = 2.0 * R - r
            heading += math.pi
            self.mean_heading += math.pi
        rho = math.exp(-step / decor)
        self.shadow = shadow = rho * self.shadow + math.sqrt(1.0 - rho * rho) * sigma * z[2]
        self.x, self.y, self.speed, self.heading = x, y, speed, heading
        self.level = level = snr_ref - pl * math.log10((r if r > ref else ref) / ref) + shadow
        self.estimate = level + self.csi_error * z[3]

    def advance_batch(self, state: dict[str, np.ndarray], z: np.ndarray) -> None:
        # the same equations as `advance`, written with few numpy temporaries (the vector env's hot loop)
        a = self._a
        speed = state["speed"] * a
        speed += self._speed_noise * z[0] + self._speed_drift
        np.maximum(speed, 0.0, out=speed)
        np.minimum(speed, self._max_speed, out=speed)
        heading = state["heading"] * a
        heading += (1.0 - a) * state["mean_heading"] + self._heading_noise * z[1]
        step = speed * self.mobility.dt
        x = step * np.cos(heading)
        x += state["x"]
        y = step * np.sin(heading)
        y += state["y"]
        r = np.hypot(x, y)
        R = self.mobility.cell_radius
        out = np.flatnonzero(r > R)  # a few sub-envs a step: index them, boolean masks would scan all N each time
        if out.size:
            ro = r[out]
            f = (2.0 * R - ro) / ro
            x[out] *= f
            y[out] *= f
            r[out] = 2.0 * R - ro
            heading[out] += math.pi
            state["mean_heading"][out] += math.pi
        rho = np.exp(step / -self.shadowing.decorrelation_m)
        shadow = rho * state["shadow"]
        rho *= rho
        np.subtract(1.0, rho, out=rho)
        np.sqrt(rho, out=rho)
        shadow += rho * (self.shadowing.sigma_db * z[2])
        pl = self.path_loss
        np.maximum(r, pl.ref_distance, out=r)
        r /= pl.ref_distance
        level = self._pl_scale * np.log10(r)
        np.subtract(pl.snr_ref_db, level, out=level)
        level += shadow
        state["x"], state["y"], state["speed"], state["heading"] = x, y, speed, heading
        state["shadow"], state["level"] = shadow, level
        state["estimate"] = level + self.csi_error * z[3]

    def describe(self) -> dict:
        return {
            "class": type(self).__name__,
            "mobility": vars(self.mobility).copy(),
            "path_loss": vars(self.path_loss).copy(),
            "shadowing": vars(self.shadowing).copy(),
            "csi_error": self.csi_error,
            "nakagami_m": self.nakagami_m,
        }


class UniformLevelChannel(ChannelDynamics):
    """Level ~ U(low, high) at reset, moved between steps only by the agent's actions (`on_action`, none here); the
    estimate carries the CSI error. The base of `StaticChannel` and `PaperErasureDrift`."""

    state_names = ("level", "estimate")
    low: float
    high: float

    def reset(self, z: Sequence[float]) -> None:
        self.level = self.low + (self.high - self.low) * uniform_from_normals(z[0], z[1])
        self.estimate = self.level + self.csi_error * z[2]

    def reset_batch(self, state: dict[str, np.ndarray], idx: np.ndarray, z: np.ndarray) -> None:
        level = self.low + (self.high - self.low) * uniform_from_normals(z[0], z[1])
        state["level"][idx] = level
        state["estimate"][idx] = level + self.csi_error * z[2]

    def advance(self, z: Sequence[float]) -> None:
        self.estimate = self.level + self.csi_error * z[3]

    def advance_batch(self, state: dict[str, np.ndarray], z: np.ndarray) -> None:
        state["estimate"] = state["level"] + self.csi_error * z[3]


class StaticChannel(UniformLevelChannel):
    """Level ~ U(low, high) at reset (``low == high``: fixed), constant within the episode; estimate with CSI error."""

    def __init__(self, level_name: str, low: float, high: float, csi_error: float = 0.0, nakagami_m: float = 2.0):
        if level_name not in ("snr_db", "rho"):
            raise ValueError(f"level_name must be 'snr_db' or 'rho', got {level_name!r}")
        if not (math.isfinite(low) and math.isfinite(high) and low <= high):
            raise ValueError(f"need finite low <= high, got low={low!r}, high={high!r}")
        self.level_name = level_name
        self.low, self.high = float(low), float(high)
        self.csi_error = float(csi_error)
        self.nakagami_m = float(nakagami_m)
        self.level = self.estimate = self.low

    def describe(self) -> dict:
        return {"class": type(self).__name__, "low": self.low, "high": self.high, "csi_error": self.csi_error}


#: the authors' surrogate env's factors on ρ for the moves −4..+4 (`PaperErasureDrift` ``factors``): the pattern
#: ``1 − 0.0005·move``, except the +3 move, which their code multiplies by 0.9995 (the pattern would give 0.9985)
AUTHORS_DRIFT_FACTORS = (1.002, 1.0015, 1.001, 1.0005, 1.0, 0.9995, 0.999, 0.9995, 0.998)


class PaperErasureDrift(UniformLevelChannel):
    """The authors' surrogate env: ρ ~ U(rho_low, rho_high) at reset; each step, moving the split ``j`` layers
    shallower multiplies ρ by ``1 + rate·j``, deeper by ``1 − rate·j`` (rate 0.0005, i.e. 0.05–0.2 % a step), then ρ is
    clipped to ``[0, rho_max]`` (``rho_max`` defaults to ``rho_high``). The change is applied before the step's reward
    (the reward sees the new ρ), as in their code. The agent sees ρ exactly by default (``csi_error`` 0).

    ``factors``: instead of the pattern, a table of ``2m + 1`` factors for the moves ``−m..+m`` (a larger move raises
    ``ValueError``). Their code has ``0.9995`` for the +3 move, an apparent typo of the pattern's ``0.9985``: the
    default (``None``, the pattern) corrects it; `AUTHORS_DRIFT_FACTORS` reproduces it. ``float32``: store ρ as a
    float32 after each reset and move, as their state array does (the product itself is taken in float64).
    """

    level_name = "rho"

    def __init__(
        self,
        rho_low: float = 0.01,
        rho_high: float = 0.3,
        rate: float = 0.0005,
        rho_max: float | None = None,
        csi_error: float = 0.0,
        factors: Sequence[float] | None = None,
        float32: bool = False,
    ):
        rho_max = rho_high if rho_max is None else rho_max
        if not 0.0 <= rho_low <= rho_high <= rho_max <= 1.0:
            raise ValueError(f"need 0 <= rho_low <= rho_high <= rho_max <= 1, got {rho_low}, {rho_high}, {rho_max}")
        if not 0.0 <= rate < 0.25:
            raise ValueError(f"rate must lie in [0, 0.25), got {rate!r}")
        if factors is not None:
            factors = tuple(float(f) for f in factors)
            if len(factors) % 2 != 1 or not all(math.isfinite(f) and f > 0.0 for f in factors):
                raise ValueError(f"factors must be an odd number (2m + 1) of positive finite factors, got {factors!r}")
        self.rho_low, self.rho_high, self.rate, self.rho_max = float(rho_low), float(rho_high), float(rate), rho_max
        self.low, self.high = self.rho_low, self.rho_high
        self.csi_error = float(csi_error)
        self.factors = factors
        self.float32 = bool(float32)
        self.max_move = None if factors is None else len(factors) // 2
        self._factor_array = None if factors is None else np.array(factors)
        self.level = self.estimate = self.rho_low

    def _moved(self, move: int) -> float:
        """ρ after a move of ``move`` layers (clipped; rounded to float32 when ``float32``)."""
        if self.factors is None:
            level = min(max(self.level * (1.0 - self.rate * move), 0.0), self.rho_max)
        else:
            m = self.max_move
            if not -m <= move <= m:
                raise ValueError(f"move {move} is outside the drift's factor table (moves -{m}..+{m})")
            level = min(max(self.level * self.factors[move + m], 0.0), self.rho_max)
        return float(np.float32(level)) if self.float32 else level

    def level_after(self, move: int) -> float:
        return self._moved(move)

    def on_action(self, move: int) -> None:
        self.level = self._moved(move)

    def on_action_batch(self, state: dict[str, np.ndarray], move: np.ndarray) -> None:
        if self.factors is None:
            level = np.clip(state["level"] * (1.0 - self.rate * move), 0.0, self.rho_max)
        else:
            m = self.max_move
            if move.size and np.abs(move).max() > m:
                raise ValueError(f"moves {sorted(set(move[np.abs(move) > m].tolist()))} are outside the drift's "
                                 f"factor table (moves -{m}..+{m})")  # fmt: skip
            level = np.clip(state["level"] * self._factor_array[move + m], 0.0, self.rho_max)
        state["level"] = level.astype(np.float32).astype(np.float64) if self.float32 else level

    def reset(self, z: Sequence[float]) -> None:
        super().reset(z)
        if self.float32:
            self.level = float(np.float32(self.level))
            self.estimate = self.level + self.csi_error * z[2]

    def reset_batch(self, state: dict[str, np.ndarray], idx: np.ndarray, z: np.ndarray) -> None:
        super().reset_batch(state, idx, z)
        if self.float32:
            level = state["level"][idx].astype(np.float32).astype(np.float64)
            state["level"][idx] = level
            state["estimate"][idx] = level + self.csi_error * z[2]

    def describe(self) -> dict:
        names = ("rho_low", "rho_high", "rate", "rho_max", "csi_error", "factors", "float32")
        return {"class": type(self).__name__, **{name: getattr(self, name) for name in names}}
