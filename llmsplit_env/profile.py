"""``python -m llmsplit_env.profile``: the command the shipped profiles' ``metadata.command`` records, kept runnable.

The profile builder is `llmsplit_env.profile_builder`; this module only forwards to its CLI, so a recorded command
reproduces its profile. (Profiles themselves are read by `llmsplit_env.quality.load_profile`.)
"""

from llmsplit_env.profile_builder import main

if __name__ == "__main__":
    raise SystemExit(main())
