"""``python evaluate.py ARGS`` is ``llmsplit evaluate ARGS``: the code lives in `agents.zoo.evaluate` (inside the
wheel)."""

from agents.zoo.evaluate import build_parser, main, run  # noqa: F401  (for callers of evaluate.main / .run)

if __name__ == "__main__":
    raise SystemExit(main())
