"""``python -m agents.zoo``: the ``llmsplit`` command, for an environment whose scripts directory is not on PATH."""

from agents.zoo.cli import main

raise SystemExit(main())
