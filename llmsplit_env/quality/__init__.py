"""Quality of a split: measured profiles (and, from the environment issue on, the env's quality backends)."""

from llmsplit_env.quality.profile import Profile, ProfileError, load_profile, profile_from_dict, shipped_profiles

__all__ = ["Profile", "ProfileError", "load_profile", "profile_from_dict", "shipped_profiles"]
