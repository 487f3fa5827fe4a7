"""Build the simulator's parts from a resolved config: the quality backend and the channel dynamics."""

from __future__ import annotations

from llmsplit_env.dynamics import (
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


def make_backend(cfg: dict) -> QualityBackend:
    """The quality backend a (validated) config asks for."""
    scheme = cfg["scheme"]
    explicit = cfg["profile"] is not None
    profile = cfg["profile"] if explicit else f"smollm2-135m-{scheme}"
    if cfg["backend"] == "profile":
        qb = ProfileQuality(profile, sample=cfg["sample_quality"])
        if qb.scheme != scheme:
            raise ValueError(f"config 'profile' {profile!r} was measured with scheme {qb.scheme!r}, not {scheme!r}")
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
    """The channel dynamics a (validated) config asks for, checked against the backend's level."""
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
        if pd["rate"] > 0 and lo > 0:
            raise ValueError(
                f"config 'channel.paper_drift.rate' = {pd['rate']} drifts rho below rho_low towards 0 as the split "
                f"moves up, under the profile's grid of rho [{lo}, {hi}] ({qb.profile.source}); use a profile "
                "measured from rho = 0, or rate 0"
            )
