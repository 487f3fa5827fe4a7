"""One place that knows every agent: build, train, save and load them by name (used by train.py, evaluate.py and
the benchmarks). ``REGISTRY`` maps each algo to its `AlgoEntry` (agent class, trainer, file name, hyperparameters).

| algo            | what                                                        | real quality evaluations      |
|-----------------|-------------------------------------------------------------|-------------------------------|
| `mbrl`          | `MBRLAgent` (ensemble surrogate + discrete planning)         | its env steps                 |
| `ppo`, `a2c`, `dqn`, `maskable_ppo` | SB3 / sb3-contrib on the real reward    | their env steps               |
| `rsm_ppo`       | the paper's RSM-PPO (surrogate fitted on N real steps)      | N                             |
| `threshold`     | SNR-threshold rule fitted on random real steps              | its fitting steps             |
| `oracle`, `random`, `fixed` | privileged upper bound, lower bound, the best fixed split (or a given one) | 0 |
"""

from __future__ import annotations

import importlib
import inspect
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym

from agents.env_util import make_env
from agents.hyperparameters import check_hyperparams, load_hyperparams

if TYPE_CHECKING:
    from agents.evaluation import OracleNormalizer

SB3_ALGOS = ("ppo", "a2c", "dqn", "maskable_ppo")
HEURISTICS = ("oracle", "random", "fixed", "threshold")
# Seeds of the episodes that pick the best fixed split (`agents.evaluation.best_fixed_split`) for `fixed`.
BEST_FIXED_EPISODES = 20


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


@dataclass
class TrainJob:
    """Everything a trainer needs (built by `train_agent`)."""

    algo: str
    env: gym.Env
    env_id: str
    env_kwargs: dict | None
    seed: int
    n_timesteps: int | None
    tensorboard_log: str | None
    eval_freq: int | None
    eval_at: list[int] | None
    progress_bar: bool
    hyperparams: dict | None
    #: ``(agent, real evaluations) -> {mean_reward, normalized_score}`` (appends to the curve), or None: no scoring
    point: Callable[[Any, int], dict[str, float]] | None


#: a trainer returns ``(agent, steps, real evaluations, hyperparameters used)``
Trainer = Callable[[TrainJob], tuple[Any, int, int, dict]]


def _own_keys(module: str, cls: str) -> Callable[[], list[str]]:
    """Hyperparameters of one of our agents: its constructor's arguments (bar what the zoo passes) and n_timesteps."""

    def keys() -> list[str]:
        params = inspect.signature(getattr(importlib.import_module(module), cls)).parameters
        return [p for p in params if p not in ("env", "tensorboard_log", "seed")] + ["n_timesteps"]

    return keys


def _sb3_keys(algo: str) -> Callable[[], list[str]]:
    def keys() -> list[str]:
        from agents.baselines import sb3_hyperparam_keys

        return sb3_hyperparam_keys(algo)

    return keys


@dataclass(frozen=True)
class AlgoEntry:
    """One row of the registry."""

    #: module and class of the agent
    module: str
    cls: str
    train: Trainer
    #: what `train_agent` saves the agent as, under its ``out_dir``
    file_name: str
    #: the hyperparameter names it takes (``--hyperparams algo.key:value``)
    hyperparam_keys: Callable[[], list[str]]
    #: whether ``-n/--n-timesteps`` is a budget for it (learning agents and the threshold rule's fitting steps)
    uses_budget: bool = True
    #: its ``agents/hyperparams/<algo>.yml`` table is read
    yaml: bool = False
    #: ``save(agent, path, record)`` (the record: algo, hyperparameters, seed); our agents write atomically themselves
    save: Callable[[Any, Path, dict], None] = lambda agent, path, record: agent.save(str(path))
    #: ``load(path, env)``; default: the class's ``load(path, env=env)``
    load: Callable[[Path, gym.Env | None], Any] | None = None

    def agent_class(self) -> type:
        return getattr(importlib.import_module(self.module), self.cls)

    def load_agent(self, path: Path, env: gym.Env | None) -> Any:
        if self.load is not None:
            return self.load(path, env)
        return self.agent_class().load(str(path), env=env)


# ------------------------------------------------------------------------------------------------ trainers
def _eval_freq(job: TrainJob, steps: int) -> int:
    return job.eval_freq or max(1, steps // 10)


def _train_mbrl(job: TrainJob) -> tuple[Any, int, int, dict]:
    from agents.mbrl import MBRLAgent

    hp = load_hyperparams("mbrl", job.env_id, job.hyperparams)
    steps = int(job.n_timesteps or hp.pop("n_timesteps"))
    hp.pop("n_timesteps", None)
    agent = MBRLAgent(job.env, seed=job.seed, tensorboard_log=job.tensorboard_log, **hp)
    point = job.point
    eval_fn = (lambda a: point(a, a.quality_evals)) if point is not None else None
    agent.learn(steps, tb_log_name="MBRL", progress_bar=job.progress_bar, eval_fn=eval_fn,
                eval_freq=job.eval_at or _eval_freq(job, steps))  # fmt: skip
    return agent, steps, agent.quality_evals, hp


def _train_sb3(job: TrainJob) -> tuple[Any, int, int, dict]:
    from agents.baselines import make_sb3_agent
    from agents.callbacks import CurveCallback, RewardComponentCallback

    hp = load_hyperparams(job.algo, job.env_id, job.hyperparams)
    steps = int(job.n_timesteps or hp.get("n_timesteps"))
    agent = make_sb3_agent(job.algo, job.env, hp, seed=job.seed, tensorboard_log=job.tensorboard_log,
                           env_id=job.env_id)  # fmt: skip
    counter = RewardComponentCallback()
    callbacks = [counter]
    if job.point is not None:
        # x = real evaluations as the counter sees them (on the live env, k = L steps cost none)
        callbacks.append(CurveCallback(job.point, _eval_freq(job, steps), lambda _: counter.quality_evals,
                                       job.eval_at))  # fmt: skip
    agent.learn(steps, callback=callbacks, tb_log_name=job.algo.upper(), progress_bar=job.progress_bar)
    return agent, steps, int(counter.quality_evals), hp


def _train_rsm(job: TrainJob) -> tuple[Any, int, int, dict]:
    from agents.callbacks import CurveCallback
    from agents.rsm import RSMPPOAgent

    hp = load_hyperparams("rsm_ppo", job.env_id, job.hyperparams)
    steps = int(job.n_timesteps or hp.pop("n_timesteps"))
    hp.pop("n_timesteps", None)
    agent = RSMPPOAgent(job.env, seed=job.seed, tensorboard_log=job.tensorboard_log, **hp)
    # Its whole real-evaluation cost is paid before PPO starts: every curve point sits at n_real.
    callbacks = None
    if job.point is not None:
        callbacks = [CurveCallback(job.point, _eval_freq(job, steps), lambda _: agent.quality_evals)]
    agent.learn(steps, callback=callbacks, tb_log_name="RSM-PPO", progress_bar=job.progress_bar)
    return agent, steps, agent.quality_evals, hp


def _train_oracle(job: TrainJob) -> tuple[Any, int, int, dict]:
    from agents.baselines import OracleAgent

    return OracleAgent(job.env), 0, 0, dict(job.hyperparams or {})


def _train_random(job: TrainJob) -> tuple[Any, int, int, dict]:
    from agents.baselines import RandomAgent

    return RandomAgent(job.env, seed=job.seed), 0, 0, dict(job.hyperparams or {})


def _train_fixed(job: TrainJob) -> tuple[Any, int, int, dict]:
    from agents.baselines import FixedSplitAgent
    from agents.env_util import counts_info
    from agents.evaluation import best_fixed_split

    hp = dict(job.hyperparams or {})
    split = hp.get("split")
    if split is None:  # the best fixed split (privileged, like the oracle: no real evaluations on a profile env)
        seeds = [10_000_000 + job.seed * 1000 + ep for ep in range(BEST_FIXED_EPISODES)]
        kwargs = dict(job.env_kwargs or {})
        if counts_info(job.env):  # live backend: rank the splits on its profile, as the oracle's expectations do
            kwargs["backend"] = "profile"
        split, _ = best_fixed_split(job.env_id, seeds, kwargs)
    return FixedSplitAgent(job.env, int(split)), 0, 0, hp


def _train_threshold(job: TrainJob) -> tuple[Any, int, int, dict]:
    from agents.baselines import SNRThresholdAgent

    hp = dict(job.hyperparams or {})
    if job.n_timesteps is not None:
        hp.setdefault("num_steps", job.n_timesteps)
    steps = int(hp.get("num_steps", 500))
    agent = SNRThresholdAgent(job.env).fit(steps, seed=job.seed)
    return agent, steps, agent.quality_evals, hp


def _save_sb3(model: Any, path: Path, record: dict) -> None:
    from agents.sb3_io import save_sb3

    save_sb3(model, path, record["algo"], record["hyperparams"], record["seed"])


def _load_sb3(algo: str) -> Callable[[Path, gym.Env | None], Any]:
    def load(path: Path, env: gym.Env | None) -> Any:
        from agents.sb3_io import load_sb3

        return load_sb3(path, env, algo=algo)

    return load


def _keys(*names: str) -> Callable[[], list[str]]:
    return lambda: list(names)


REGISTRY: dict[str, AlgoEntry] = {
    "mbrl": AlgoEntry("agents.mbrl", "MBRLAgent", _train_mbrl, "agent.pt", _own_keys("agents.mbrl", "MBRLAgent"),
                      yaml=True),
    **{a: AlgoEntry("agents.baselines", cls, _train_sb3, "agent.zip", _sb3_keys(a), yaml=True, save=_save_sb3,
                    load=_load_sb3(a))
       for a, cls in zip(SB3_ALGOS, ("PPO", "A2C", "DQN", "MaskablePPO"), strict=True)},
    "rsm_ppo": AlgoEntry("agents.rsm", "RSMPPOAgent", _train_rsm, "agent.zip", _own_keys("agents.rsm", "RSMPPOAgent"),
                         yaml=True),
    "oracle": AlgoEntry("agents.baselines", "OracleAgent", _train_oracle, "agent.json", _keys(), uses_budget=False),
    "random": AlgoEntry("agents.baselines", "RandomAgent", _train_random, "agent.json", _keys(), uses_budget=False),
    "fixed": AlgoEntry("agents.baselines", "FixedSplitAgent", _train_fixed, "agent.json", _keys("split"),
                       uses_budget=False),
    "threshold": AlgoEntry("agents.baselines", "SNRThresholdAgent", _train_threshold, "agent.json",
                           _keys("num_steps")),
}  # fmt: skip
ALGOS = tuple(REGISTRY)


def _entry(algo: str) -> AlgoEntry:
    if algo not in REGISTRY:
        raise ValueError(f"unknown algo {algo!r}; allowed: {', '.join(ALGOS)}")
    return REGISTRY[algo]


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
    entry = _entry(algo)
    if eval_freq is not None and (isinstance(eval_freq, bool) or not isinstance(eval_freq, int) or eval_freq < 1):
        raise ValueError(f"eval_freq must be an integer >= 1, got {eval_freq!r}")
    check_hyperparams(algo, hyperparams or {}, entry.hyperparam_keys())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    env = make_env(env_id, env_kwargs)
    curve: list[dict] = []
    t0 = time.perf_counter()

    def point(agent, evals: int) -> dict[str, float]:
        res = scorer(agent)
        p = {"mean_reward": float(res["mean_return"]), "normalized_score": float(res["normalized_score"])}
        curve.append({"quality_evals": int(evals), **p})
        return p

    job = TrainJob(algo, env, env_id, env_kwargs, seed, n_timesteps, tensorboard_log, eval_freq, eval_at, progress_bar,
                   hyperparams, point if scorer is not None else None)  # fmt: skip
    agent, steps, evals, hp = entry.train(job)
    train_s = time.perf_counter() - t0
    path = (out / entry.file_name).resolve()  # absolute: evaluate.py may run from elsewhere
    entry.save(agent, path, {"algo": algo, "hyperparams": hp, "seed": seed})
    return TrainRecord(algo, env_id, seed, str(path), int(evals), train_s, int(steps), curve, _jsonable(hp))


def load_agent(algo: str, path: str | Path, env: gym.Env | None = None):
    """Load an agent saved by `train_agent` (heuristics need ``env``)."""
    entry = _entry(algo)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no saved {algo} agent at {str(path)!r}")
    return entry.load_agent(path, env)


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
