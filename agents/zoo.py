"""One place that knows every agent: build, train, save and load them by name (used by train.py, evaluate.py and
the benchmarks).

| algo            | what                                                        | real quality evaluations      |
|-----------------|-------------------------------------------------------------|-------------------------------|
| `mbrl`          | `MBRLAgent` (ensemble surrogate + discrete planning)         | its env steps                 |
| `ppo`, `a2c`, `dqn`, `maskable_ppo` | SB3 / sb3-contrib on the real reward    | their env steps               |
| `rsm_ppo`       | the paper's RSM-PPO (surrogate fitted on N real steps)      | N                             |
| `threshold`     | SNR-threshold rule fitted on random real steps              | its fitting steps             |
| `oracle`, `random`, `fixed` | privileged upper bound, lower bound, a fixed split | 0                           |
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import yaml

import llmsplit_env  # noqa: F401  (registers the ids)

if TYPE_CHECKING:
    from agents.logging import OracleNormalizer

SB3_ALGOS = ("ppo", "a2c", "dqn", "maskable_ppo")
HEURISTICS = ("oracle", "random", "fixed", "threshold")
ALGOS = ("mbrl", *SB3_ALGOS, "rsm_ppo", *HEURISTICS)
FILE_NAMES = {"mbrl": "agent.pt", "rsm_ppo": "agent", **{a: "agent.zip" for a in SB3_ALGOS}}


def make_env(env_id: str, env_kwargs: dict | None = None, **kwargs) -> gym.Env:
    """``gym.make(env_id)`` with ``env_kwargs`` as the env's config dict."""
    if env_id not in gym.registry:
        known = ", ".join(i for i in gym.registry if i.startswith("LLMSplit"))
        raise ValueError(f"unknown env id {env_id!r}; registered LLMSplit ids: {known}")
    return gym.make(env_id, **({"config": env_kwargs} if env_kwargs else {}), **kwargs)


def load_yaml_hyperparams(algo: str, env_id: str) -> dict:
    """Hyperparameters of ``algo`` for ``env_id`` from ``agents/hyperparams/<algo>.yml`` (rl-baselines3-zoo layout)."""
    path = resources.files("agents") / "hyperparams" / f"{algo}.yml"
    if not path.is_file():
        raise ValueError(f"no hyperparameter file for algo {algo!r} ({path})")
    table = yaml.safe_load(path.read_text())
    if env_id not in table:
        raise ValueError(f"{path.name} has no entry for env {env_id!r}; entries: {', '.join(table)}")
    return dict(table[env_id])


@dataclass
class TrainRecord:
    """What training an agent cost and how it went (written to the run's summary)."""

    algo: str
    env_id: str
    seed: int
    path: str
    quality_evals: int
    train_s: float
    n_timesteps: int
    curve: list[dict] = field(default_factory=list)  # [{quality_evals, mean_return, normalized_score}]
    hyperparams: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


def train_agent(
    algo: str,
    env_id: str = "LLMSplit-v0",
    env_kwargs: dict | None = None,
    seed: int = 0,
    n_timesteps: int | None = None,
    out_dir: str | Path = "runs/agents",
    tensorboard_log: str | None = None,
    eval_freq: int | None = None,
    scorer: OracleNormalizer | None = None,
    progress_bar: bool = False,
    hyperparams: dict | None = None,
    eval_at: list[int] | None = None,
) -> TrainRecord:
    """Build ``algo``, train it on ``env_id`` and save it under ``out_dir``; return the record.

    Learning agents are scored by ``scorer`` every ``eval_freq`` steps (default: a tenth of the budget), or, with
    ``eval_at``, whenever their real-evaluation count first reaches each of those numbers (the same schedule for
    every agent, as the sample-efficiency benchmark needs).
    """
    if algo not in ALGOS:
        raise ValueError(f"unknown algo {algo!r}; allowed: {', '.join(ALGOS)}")
    if eval_freq is not None and (isinstance(eval_freq, bool) or not isinstance(eval_freq, int) or eval_freq < 1):
        raise ValueError(f"eval_freq must be an integer >= 1, got {eval_freq!r}")
    _check_hyperparams(algo, hyperparams or {})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    env = make_env(env_id, env_kwargs)
    curve: list[dict] = []
    t0 = time.perf_counter()
    hp: dict[str, Any] = {}

    def point(agent, evals: int) -> dict[str, float]:
        res = scorer(agent)
        p = {"mean_reward": float(res["mean_return"]), "normalized_score": float(res["normalized_score"])}
        curve.append({"quality_evals": int(evals), **p})
        return p

    if algo == "mbrl":
        from agents.mbrl import MBRLAgent

        hp = {**load_yaml_hyperparams("mbrl", env_id), **(hyperparams or {})}
        steps = int(n_timesteps or hp.pop("n_timesteps"))
        hp.pop("n_timesteps", None)
        agent = MBRLAgent(env, seed=seed, tensorboard_log=tensorboard_log, **hp)
        eval_fn = (lambda a: point(a, a.quality_evals)) if scorer is not None else None
        freq = eval_freq or max(1, steps // 10)
        agent.learn(steps, tb_log_name="MBRL", progress_bar=progress_bar, eval_fn=eval_fn, eval_freq=eval_at or freq)
        evals = agent.quality_evals
    elif algo in SB3_ALGOS:
        from agents.baselines import load_hyperparams, make_sb3_agent
        from agents.logging import RewardComponentCallback

        hp = load_hyperparams(algo, env_id, hyperparams)
        steps = int(n_timesteps or hp.get("n_timesteps"))
        agent = make_sb3_agent(algo, env, hp, seed=seed, tensorboard_log=tensorboard_log, env_id=env_id)
        counter = RewardComponentCallback()
        callbacks = [counter]
        if scorer is not None:
            # x = real evaluations as the counter sees them (on the live env, k = L steps cost none)
            callbacks.append(CurveCallback(point, eval_freq or max(1, steps // 10), lambda _: counter.quality_evals,
                                           eval_at))  # fmt: skip
        agent.learn(steps, callback=callbacks, tb_log_name=algo.upper(), progress_bar=progress_bar)
        evals = int(counter.quality_evals)
    elif algo == "rsm_ppo":
        from agents.rsm import RSMPPOAgent

        hp = {**load_yaml_hyperparams("rsm_ppo", env_id), **(hyperparams or {})}
        steps = int(n_timesteps or hp.pop("n_timesteps"))
        hp.pop("n_timesteps", None)
        agent = RSMPPOAgent(env, seed=seed, tensorboard_log=tensorboard_log, **hp)
        # Its whole real-evaluation cost is paid before PPO starts: every curve point sits at n_real.
        callbacks = [CurveCallback(point, eval_freq or max(1, steps // 10), lambda _: agent.quality_evals)]
        agent.learn(steps, callback=callbacks if scorer is not None else None, tb_log_name="RSM-PPO",
                    progress_bar=progress_bar)  # fmt: skip
        evals = agent.quality_evals
    else:
        hp = dict(hyperparams or {})
        if algo == "threshold" and n_timesteps is not None:
            hp.setdefault("num_steps", n_timesteps)
        agent, steps = _heuristic(algo, env, env_id, env_kwargs, seed, hp)
        evals = getattr(agent, "quality_evals", 0)
    train_s = time.perf_counter() - t0
    path = (out / FILE_NAMES.get(algo, "agent.json")).resolve()  # absolute: evaluate.py may run from elsewhere
    agent.save(str(path))
    return TrainRecord(algo, env_id, seed, str(path), int(evals), train_s, int(steps), curve, _jsonable(hp))


HEURISTIC_KEYS = {"oracle": (), "random": (), "fixed": ("split",), "threshold": ("num_steps",)}


def _check_hyperparams(algo: str, hp: dict) -> None:
    """Unknown hyperparameter names fail loudly, naming what the algo takes (SB3 algos are checked by their builder)."""
    import inspect

    if algo in SB3_ALGOS:
        return
    if algo == "mbrl":
        from agents.mbrl import MBRLAgent

        allowed = [p for p in inspect.signature(MBRLAgent).parameters if p not in ("env", "tensorboard_log", "seed")]
    elif algo == "rsm_ppo":
        from agents.rsm import RSMPPOAgent

        allowed = [p for p in inspect.signature(RSMPPOAgent).parameters if p not in ("env", "tensorboard_log", "seed")]
    else:
        allowed = list(HEURISTIC_KEYS[algo])
    if algo in ("mbrl", "rsm_ppo"):
        allowed.append("n_timesteps")
    bad = sorted(set(hp) - set(allowed))
    if bad:
        raise ValueError(f"unknown hyperparameter(s) {bad} for {algo}; allowed: {', '.join(allowed) or 'none'}")


def _heuristic(algo, env, env_id, env_kwargs, seed, hp):
    from agents.baselines import FixedSplitAgent, OracleAgent, RandomAgent, SNRThresholdAgent

    if algo == "oracle":
        return OracleAgent(env), 0
    if algo == "random":
        return RandomAgent(env, seed=seed), 0
    if algo == "fixed":
        split = hp.get("split")
        if split is None:  # the best fixed split by expected reward over random channel states (privileged, free)
            split = _best_fixed_split(env_id, env_kwargs, seed)
        return FixedSplitAgent(env, int(split)), 0
    agent = SNRThresholdAgent(env)
    steps = int(hp.get("num_steps", 500))
    agent.fit(steps, seed=seed)
    return agent, steps


def _best_fixed_split(env_id, env_kwargs, seed, episodes: int = 20) -> int:
    env = make_env(env_id, env_kwargs)
    u = env.unwrapped
    totals = np.zeros(len(u.splits))
    for ep in range(episodes):
        env.reset(seed=10_000_000 + seed * 1000 + ep)
        done = False
        while not done:
            totals += u.expected_rewards()
            _, _, term, trunc, _ = env.step(int(env.action_space.sample()))
            done = term or trunc
    return int(u.splits[int(np.argmax(totals))])


def load_agent(algo: str, path: str | Path, env: gym.Env | None = None):
    """Load an agent saved by `train_agent` (heuristics need ``env``)."""
    path = Path(path)
    if algo not in ALGOS:
        raise ValueError(f"unknown algo {algo!r}; allowed: {', '.join(ALGOS)}")
    if not path.exists():
        raise FileNotFoundError(f"no saved {algo} agent at {str(path)!r}")
    if algo == "mbrl":
        from agents.mbrl import MBRLAgent

        return MBRLAgent.load(path, env)
    if algo in SB3_ALGOS:
        from agents.baselines import ALGOS as SB3

        return SB3[algo].load(str(path), env=env)
    if algo == "rsm_ppo":
        from agents.rsm import RSMPPOAgent

        return RSMPPOAgent.load(str(path), env=env)
    from agents import baselines

    cls = {
        "oracle": baselines.OracleAgent,
        "random": baselines.RandomAgent,
        "fixed": baselines.FixedSplitAgent,
        "threshold": baselines.SNRThresholdAgent,
    }[algo]
    return cls.load(str(path), env=env)


def cli_main(build_parser: Callable[[], Any], run: Callable[[Any], int], argv: list[str] | None) -> int:
    """Shared front-door entry: parse, run, and turn bad input (``ValueError``/``FileNotFoundError``) into a one-line
    ``error: …`` on stderr with exit status 2, like argparse's own errors."""
    import sys

    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _jsonable(d: dict) -> dict:
    return json.loads(json.dumps(d, default=str))


def _curve_callback_class():
    from stable_baselines3.common.callbacks import BaseCallback

    class _CurveCallback(BaseCallback):
        def __init__(self, point, eval_freq: int, evals=None, eval_at=None) -> None:
            super().__init__()
            self.point, self.eval_freq = point, eval_freq
            self.evals = evals or (lambda cb: cb.num_timesteps)
            self.eval_at = sorted(eval_at) if eval_at else None
            self._last = None

        def _evaluate(self) -> None:
            self._last = self.evals(self)
            for k, v in self.point(self.model, self._last).items():
                self.logger.record(f"eval/{k}", v)
            self.logger.dump(self.num_timesteps)

        def _due(self) -> bool:
            if self.eval_at is None:
                return self.n_calls % self.eval_freq == 0
            if self.eval_at and self.evals(self) >= self.eval_at[0]:
                while self.eval_at and self.evals(self) >= self.eval_at[0]:
                    self.eval_at.pop(0)
                return True
            return False

        def _on_step(self) -> bool:
            if self._due():
                self._evaluate()
            return True

        def _on_training_end(self) -> None:
            if self._last != self.evals(self):
                self._evaluate()

    return _CurveCallback


def CurveCallback(point: Callable[[Any, int], dict[str, float]], eval_freq: int, evals=None, eval_at=None):
    """Every ``eval_freq`` steps (or when ``evals`` first reaches each of ``eval_at``) and at the end: score the
    model, log ``eval/*``, extend the curve (x = ``evals(callback)``, default the step count).

    Built lazily so that SB3 is imported only when an SB3-based agent trains.
    """
    return _curve_callback_class()(point, eval_freq, evals, eval_at)
