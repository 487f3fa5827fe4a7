"""Build the simulator's parts from a resolved config: the quality backend and the channel dynamics."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np

from llmsplit_env.dynamics import (
    NOISE_COLUMNS,
    ChannelDynamics,
    GaussMarkovMobility,
    GudmundsonShadowing,
    LogDistancePathLoss,
    MobilityChannel,
    PaperErasureDrift,
    StaticChannel,
)
from llmsplit_env.quality.backends import ProfileQuality, QualityBackend
from llmsplit_env.quality.live import LLMQuality
from llmsplit_env.quality.surrogate import SurrogateQuality


def make_backend(cfg: dict) -> QualityBackend:
    """The quality backend a (validated) config asks for."""
    scheme = cfg["scheme"]
    explicit = cfg["profile"] is not None
    profile = cfg["profile"] if explicit else f"smollm2-135m-{scheme}"
    if cfg["backend"] == "surrogate":  # the authors' reward surrogate (config 'surrogate': its path)
        return SurrogateQuality(cfg["surrogate"])
    if cfg["backend"] == "profile":
        qb = ProfileQuality(profile, sample=cfg["sample_quality"])
        if qb.scheme != scheme:
            raise ValueError(
                f"config 'profile' {profile!r} was measured with scheme {qb.scheme!r}, but config 'scheme' is "
                f"{scheme!r}; drop 'scheme' (a profile's scheme is taken from it) or use a {scheme} profile"
            )
        m = qb.scheme_params.get("m")
        if m is not None and float(m) != cfg["channel"]["nakagami_m"]:
            raise ValueError(
                f"config 'channel.nakagami_m' = {cfg['channel']['nakagami_m']} differs from the profile's m = {m}; "
                "the profile backend can only replay the fading it was measured with (build a profile with --m, "
                "or use backend 'llm')"
            )
        return qb
    llm = cfg["llm"]
    params = {} if scheme == "erasure" else {"m": cfg["channel"]["nakagami_m"]}
    # every key of the config's `llm` section is an `LLMQuality` argument of the same name
    return LLMQuality(**llm, scheme=scheme, channel_params=params, profile=profile, profile_explicit=explicit)


def make_dynamics(cfg: dict, qb: QualityBackend) -> ChannelDynamics:
    """The channel dynamics a (validated) config asks for, checked against the backend's level; warns once
    (`GridSaturationWarning`) when the channel leaves a profile's grid too often (`grid_coverage`)."""
    dynamics = _build_dynamics(cfg, qb)
    warn_if_saturated(cfg, qb)
    return dynamics


def _build_dynamics(cfg: dict, qb: QualityBackend) -> ChannelDynamics:
    ch = cfg["channel"]
    model = ch["model"]
    # `resolve_config` has checked that the model produces the scheme's level (mobility: SNR; paper_drift: ρ)
    if model == "mobility":
        return MobilityChannel(
            GaussMarkovMobility(**ch["mobility"]),
            LogDistancePathLoss(**ch["path_loss"]),
            GudmundsonShadowing(**ch["shadowing"]),
            csi_error=ch["csi_error"],
            nakagami_m=ch["nakagami_m"],
        )
    if model == "paper_drift":
        return PaperErasureDrift(**ch["paper_drift"], csi_error=ch["csi_error"])
    st = ch["static"]  # its low/high lie in a profile's grid: `compile_problem` checked (`check_levels_in_grid`)
    if isinstance(qb, ProfileQuality):
        grid = (qb.level_lo, qb.level_hi)
    else:
        grid = (0.0, 0.3) if qb.level_name == "rho" else (-5.0, 35.0)
    low = grid[0] if st["low"] is None else st["low"]
    high = grid[1] if st["high"] is None else st["high"]
    if low > high:
        raise ValueError(f"config 'channel.static': low ({low}) must not exceed high ({high})")
    return StaticChannel(qb.level_name, low, high, csi_error=ch["csi_error"], nakagami_m=ch["nakagami_m"])


def check_levels_in_grid(cfg: dict, qb: QualityBackend) -> None:
    """Refuse channel levels a profile backend did not measure (it would clamp them to the grid's ends silently).

    ``channel.static.low/high`` and ``channel.paper_drift.rho_low/rho_high`` must lie in the profile's level grid;
    a drifting ρ (``rate > 0``) also falls below ``rho_low`` towards 0 as the split moves up, so the grid must then
    start at 0. The live backend measures any level: nothing to check."""
    if not isinstance(qb, ProfileQuality):
        return
    ch = cfg["channel"]
    lo, hi = qb.level_lo, qb.level_hi

    def outside(key: str, v: float) -> ValueError:
        return ValueError(
            f"config 'channel.{key}' = {v} lies outside the profile's grid of {qb.level_name} [{lo}, {hi}] "
            f"({qb.profile.source}); the profile backend cannot score levels it did not measure"
        )

    if ch["model"] == "static":
        for key in ("low", "high"):
            v = ch["static"][key]
            if v is not None and not lo <= v <= hi:
                raise outside(f"static.{key}", v)
    elif ch["model"] == "paper_drift":
        pd = ch["paper_drift"]
        for key in ("rho_low", "rho_high"):
            if not lo <= pd[key] <= hi:
                raise outside(f"paper_drift.{key}", pd[key])
        drifts = pd["rate"] > 0 if pd["factors"] is None else min(pd["factors"]) < 1.0
        if drifts and lo > 0:
            key, value = ("rate", pd["rate"]) if pd["factors"] is None else ("factors", list(pd["factors"]))
            raise ValueError(
                f"config 'channel.paper_drift.{key}' = {value} drifts rho below rho_low towards 0 as the split "
                f"moves up, under the profile's grid of rho [{lo}, {hi}] ({qb.profile.source}); use a profile "
                "measured from rho = 0, or rate 0"
            )


class GridSaturationWarning(UserWarning):
    """The env's channel puts the link outside its profile's measured grid on many steps (scored at the ends)."""


#: share of steps outside a profile's grid (at an unsettled end) above which building an env warns
SATURATION_WARN_SHARE = 0.05
#: a grid end is *settled* when every profiled split's mean quality there is within this of 1 or of 0: clamping a
#: level beyond it then moves the quality component by less than this
SETTLED_QUALITY_TOL = 0.02
_warned: set[str] = set()


def grid_coverage(cfg: dict, qb: QualityBackend, steps: int = 4000, seed: int = 0) -> dict:
    """Where the config's channel puts the true level relative to a profile backend's grid, over ``steps`` simulated
    steps (episodes of ``max_episode_steps``, a private generator seeded ``seed``; the env's streams are untouched).

    Returns ``{"grid": (lo, hi), "below": share, "above": share, "settled_low": bool, "settled_high": bool}``;
    ``settled_*``: whether that end is settled (`SETTLED_QUALITY_TOL`). Channels whose level depends on the
    actions (`PaperErasureDrift`) and static ones are checked exactly at config time (`check_levels_in_grid`) and
    report zero shares here, as does the live backend (no grid)."""
    lo, hi = qb.level_lo, qb.level_hi
    out = {"grid": (lo, hi), "below": 0.0, "above": 0.0, "settled_low": True, "settled_high": True}
    if not isinstance(qb, ProfileQuality) or cfg["channel"]["model"] != "mobility":
        return out
    out["settled_low"], out["settled_high"] = (_settled(qb, lv) for lv in (lo, hi))
    dyn = _build_dynamics(cfg, qb)
    rng = np.random.default_rng(seed)
    T = max(1, min(int(cfg["max_episode_steps"]), steps))
    below = above = n = 0
    while n < steps:
        dyn.reset(rng.standard_normal(dyn.reset_normals).tolist())
        z = rng.standard_normal((T, NOISE_COLUMNS)).tolist()
        for row in z:
            level = dyn.level
            below += level < lo
            above += level > hi
            dyn.advance(row)
        n += T
    out["below"], out["above"] = below / n, above / n
    return out


def _settled(qb: ProfileQuality, level: float) -> bool:
    # k = L sends nothing: its quality is 1 at every level
    splits = [k for k in qb.profile.splits.tolist() if k < qb.num_layers]
    qualities = [qb.clean_ppl / math.exp(max(qb.interpolate(k, level)[0], qb.log_clean)) for k in splits]
    return all(q >= 1.0 - SETTLED_QUALITY_TOL for q in qualities) or all(q <= SETTLED_QUALITY_TOL for q in qualities)


def warn_if_saturated(cfg: dict, qb: QualityBackend) -> None:
    """Warn once per channel config and profile when more than `SATURATION_WARN_SHARE` of the steps fall outside
    the profile's grid at an end that is not settled (the steps' quality would be silently that of the end)."""
    if not isinstance(qb, ProfileQuality) or cfg["channel"]["model"] != "mobility":
        return
    key = json.dumps([cfg["channel"], cfg["max_episode_steps"], qb.profile.source], sort_keys=True, default=str)
    if key in _warned:
        return
    _warned.add(key)
    cov = grid_coverage(cfg, qb)
    share = cov["below"] * (not cov["settled_low"]) + cov["above"] * (not cov["settled_high"])
    if share > SATURATION_WARN_SHARE:
        lo, hi = cov["grid"]
        warnings.warn(
            f"the {cfg['channel']['model']} channel puts {qb.level_name} outside the profile's grid [{lo:g}, {hi:g}] "
            f"({qb.profile.source}) on {100 * (cov['below'] + cov['above']):.1f} % of steps ({100 * cov['below']:.1f} "
            f"% below, {100 * cov['above']:.1f} % above), {100 * share:.1f} % at an end where the profile's quality "
            "has not settled: those steps are scored at the grid's nearest end (info['outside_grid']). Use a profile "
            "measured over a wider grid, or a channel that stays in it",
            GridSaturationWarning,
            stacklevel=4,
        )
