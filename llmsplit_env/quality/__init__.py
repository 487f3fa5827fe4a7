"""Quality of a split: measured profiles, and the env's quality backends (profile-interpolated, the live model, or
the authors' reward surrogate)."""

from llmsplit_env.quality.backends import ProfileQuality, QualityBackend, floored_lognormal_expectations
from llmsplit_env.quality.live import LLMQuality
from llmsplit_env.quality.profile import (
    Profile,
    ProfileError,
    check_splits,
    load_profile,
    profile_from_dict,
    shipped_profiles,
)
from llmsplit_env.quality.surrogate import SurrogateMLP, SurrogateQuality

__all__ = [
    "LLMQuality",
    "Profile",
    "ProfileError",
    "ProfileQuality",
    "QualityBackend",
    "SurrogateMLP",
    "SurrogateQuality",
    "check_splits",
    "floored_lognormal_expectations",
    "load_profile",
    "profile_from_dict",
    "shipped_profiles",
]
