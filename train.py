"""``python train.py ARGS`` is ``llmsplit train ARGS``: the code lives in `agents.zoo.train` (inside the wheel)."""

from agents.zoo.train import build_parser, main, run  # noqa: F401  (tests call train.run / train.build_parser)

if __name__ == "__main__":
    raise SystemExit(main())
