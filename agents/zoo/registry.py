"""One place that knows every agent: build, train, save and load them by name (used by train.py, evaluate.py and
the benchmarks). ``REGISTRY`` maps each algo to its `AlgoEntry` (agent class, trainer, file name, hyperparameters).

| algo            | what                                                        | real quality evaluations      |
|-----------------|-------------------------------------------------------------|-------------------------------|
| `mbrl`          | `MBRLAgent` (ensemble surrogate + discrete planning)         | its env steps                 |
| `ppo`, `a2c`, `dqn`, `maskable_ppo` | SB3 / sb3-contrib on the real reward    | their env steps               |
| `rsm_ppo`       | the paper's RSM-PPO (surrogate fitted on N real steps)      | N                             |
| `rllib_ppo`     | RLlib PPO with env runners on a Ray cluster (`agents.rllib_ppo`) | its env steps                |
| `threshold`     | SNR-threshold rule fitted on random real steps              | its fitting steps             |
| `oracle`, `random`, `fixed` | privileged upper bound, lower bound, the best fixed split (or a given one) | 0 |
| `cell_planner`, `cell_selfish` | the edge cell's privileged coordinated planner (its "oracle") and selfish UEs | 0 |
| `cell_fixed`, `cell_random` | the edge cell: every UE at the best fixed split (or a given one); uniform random | 0 |

Each algo acts on the env kinds its entry names (``AlgoEntry.envs``): ``"single"`` (`LLMSplit-v0` and its
variants: one UE, a ``Discrete`` action) and ``"cell"`` (``LLMSplit-Cell-v0``: N UEs, one ``MultiDiscrete`` action of N
splits, the team reward). On the cell: SB3 PPO and A2C on the centralised env (``MultiDiscrete`` actions), RLlib PPO
(`agents.rllib_ppo`) and the cell baselines of `agents.cell`; the rest (DQN and MaskablePPO's tables, the MBRL and
RSM surrogates, the single-UE heuristics) are refused by name (`check_env_kind`), naming what works there.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym

from agents.common.env_util import make_env
from agents.common.hyperparameters import check_hyperparams, check_values, load_hyperparams
from agents.zoo.common import SaveFailed

if TYPE_CHECKING:
    from agents.common.evaluation import OracleNormalizer

SB3_ALGOS = ("ppo", "a2c", "dqn", "maskable_ppo")
#: the env kinds (`env_kind`): one UE (`LLMSplit-v0`, `LLMSplit-Paper-v0`, `LLMSplit-LLM-v0`), the edge cell
SINGLE, CELL = "single", "cell"
#: what each kind is, for the errors that refuse an algo on it
KIND_NAMES = {
    SINGLE: "the single-UE env (one Discrete split)",
    CELL: "the edge cell (one MultiDiscrete action of N splits, the team reward)",
}
# Seeds of the episodes that pick the best fixed split (`agents.common.evaluation.best_fixed_split`) for `fixed`.
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


def _own_keys(module: str, cls: str) -> Callable[[], list[str]]:
    """Hyperparameters of one of our agents: its constructor's arguments (bar what the zoo passes) and n_timesteps."""

    def keys() -> list[str]:
        params = inspect.signature(getattr(importlib.import_module(module), cls)).parameters
        return [p for p in params if p not in ("env", "tensorboard_log", "seed")] + ["n_timesteps"]

    return keys


def _sb3_keys(algo: str) -> Callable[[], list[str]]:
    def keys() -> list[str]:
        from agents.sb3 import sb3_hyperparam_keys

        return sb3_hyperparam_keys(algo)

    return keys


@dataclass(frozen=True)
class AlgoEntry:
    """One row of the registry."""

    #: module and class of the agent
    module: str
    cls: str
    build: Callable[[TrainJob], Built]
    #: trains the built agent (may replace ``built.agent``); returns the real quality evaluations it spent
    fit: Callable[[TrainJob, Built], int]
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
    #: the env kinds it can act on (`SINGLE`, `CELL`)
    envs: tuple[str, ...] = (SINGLE,)

    def agent_class(self) -> type:
        return getattr(importlib.import_module(self.module), self.cls)

    def load_agent(self, path: Path, env: gym.Env | None) -> Any:
        if self.load is not None:
            return self.load(path, env)
        return self.agent_class().load(str(path), env=env)


# ------------------------------------------------------------------------------------------------ trainers
# Each algo is built (agent constructed, hyperparameters and budget checked: cheap, no env steps) and then fitted:
# train.py builds every requested algo before fitting the first, so a bad value fails before any work.
@dataclass
class Built:
    """An agent ready to fit: ``steps`` its budget, ``hp`` the hyperparameters it was built from."""

    agent: Any
    steps: int
    hp: dict


def _eval_freq(job: TrainJob, steps: int) -> int:
    return job.eval_freq or max(1, steps // 10)


def _budget(job: TrainJob, hp: dict) -> int:
    steps = job.n_timesteps or hp.get("n_timesteps")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"{job.algo}: n_timesteps must be an integer >= 1, got {steps!r}")
    return steps


def _build_mbrl(job: TrainJob) -> Built:
    from agents.mbrl.agent import MBRLAgent, check_budget

    hp = load_hyperparams("mbrl", job.env_id, job.hyperparams)
    steps = _budget(job, hp)
    hp.pop("n_timesteps", None)
    agent = MBRLAgent(job.env, seed=job.seed, tensorboard_log=job.tensorboard_log, **hp)
    check_budget(steps, agent.hparams["warmup_steps"])
    return Built(agent, steps, hp)


def _fit_mbrl(job: TrainJob, built: Built) -> int:
    point = job.point
    eval_fn = (lambda a: point(a, a.quality_evals)) if point is not None else None
    built.agent.learn(built.steps, tb_log_name="MBRL", progress_bar=job.progress_bar, eval_fn=eval_fn,
                      eval_freq=job.eval_at or _eval_freq(job, built.steps))  # fmt: skip
    return built.agent.quality_evals


def _build_sb3(job: TrainJob) -> Built:
    from agents.sb3 import make_sb3_agent

    hp = load_hyperparams(job.algo, job.env_id, job.hyperparams)
    steps = _budget(job, hp)
    agent = make_sb3_agent(job.algo, job.env, hp, seed=job.seed, tensorboard_log=job.tensorboard_log,
                           env_id=job.env_id)  # fmt: skip
    return Built(agent, steps, hp)


def _fit_sb3(job: TrainJob, built: Built) -> int:
    from agents.common.callbacks import CurveCallback, RewardComponentCallback

    counter = RewardComponentCallback()
    callbacks = [counter]
    if job.point is not None:
        # x = real evaluations as the counter sees them (on the live env, k = L steps cost none)
        callbacks.append(CurveCallback(job.point, _eval_freq(job, built.steps), lambda _: counter.quality_evals,
                                       job.eval_at))  # fmt: skip
    built.agent.learn(built.steps, callback=callbacks, tb_log_name=job.algo.upper(), progress_bar=job.progress_bar)
    return int(counter.quality_evals)


def _build_rsm(job: TrainJob) -> Built:
    from agents.rsm.agent import RSMPPOAgent

    hp = load_hyperparams("rsm_ppo", job.env_id, job.hyperparams)
    steps = _budget(job, hp)
    hp.pop("n_timesteps", None)
    return Built(RSMPPOAgent(job.env, seed=job.seed, tensorboard_log=job.tensorboard_log, **hp), steps, hp)


def _fit_rsm(job: TrainJob, built: Built) -> int:
    from agents.common.callbacks import CurveCallback

    agent = built.agent
    # Its whole real-evaluation cost is paid before PPO starts: every curve point sits at n_real.
    callbacks = None
    if job.point is not None:
        callbacks = [CurveCallback(job.point, _eval_freq(job, built.steps), lambda _: agent.quality_evals)]
    agent.learn(built.steps, callback=callbacks, tb_log_name="RSM-PPO", progress_bar=job.progress_bar)
    return agent.quality_evals


def _build_rllib(job: TrainJob) -> Built:
    from agents.rllib_ppo import RLlibPPOAgent

    hp = load_hyperparams("rllib_ppo", job.env_id, job.hyperparams)
    steps = _budget(job, hp)
    hp.pop("n_timesteps", None)
    agent = RLlibPPOAgent(job.env, env_id=job.env_id, env_kwargs=job.env_kwargs, seed=job.seed,
                          tensorboard_log=job.tensorboard_log, **hp)  # fmt: skip
    return Built(agent, steps, hp)


def _fit_rllib(job: TrainJob, built: Built) -> int:
    point = job.point
    eval_fn = (lambda a: point(a, a.quality_evals)) if point is not None else None
    built.agent.learn(built.steps, eval_fn=eval_fn, eval_freq=_eval_freq(job, built.steps), eval_at=job.eval_at)
    return built.agent.quality_evals


def _rllib_keys() -> list[str]:
    from agents.rllib_ppo import rllib_hyperparam_keys

    return rllib_hyperparam_keys()


def _load_rllib(path: Path, env: gym.Env | None) -> Any:
    from agents.rllib_ppo import RLlibPPOAgent

    return RLlibPPOAgent.load(path, env)


def _build_oracle(job: TrainJob) -> Built:
    from agents.baselines import OracleAgent

    return Built(OracleAgent(job.env), 0, dict(job.hyperparams or {}))


def _build_random(job: TrainJob) -> Built:
    from agents.baselines import RandomAgent

    return Built(RandomAgent(job.env, seed=job.seed), 0, dict(job.hyperparams or {}))


def _build_fixed(job: TrainJob) -> Built:
    from agents.baselines import FixedSplitAgent

    hp = dict(job.hyperparams or {})
    split = hp.get("split")
    # no split given: `_fit_fixed` picks the best one
    return Built(FixedSplitAgent(job.env, split) if split is not None else None, 0, hp)


def _fit_fixed(job: TrainJob, built: Built) -> int:
    from agents.baselines import FixedSplitAgent
    from agents.common.env_util import counts_info
    from agents.common.evaluation import best_fixed_split

    if built.agent is None:  # the best fixed split (privileged, like the oracle: no real evaluations on a profile env)
        seeds = [10_000_000 + job.seed * 1000 + ep for ep in range(BEST_FIXED_EPISODES)]
        kwargs = dict(job.env_kwargs or {})
        if counts_info(job.env):  # live backend: rank the splits on its profile, as the oracle's expectations do
            kwargs["backend"] = "profile"
        split, _ = best_fixed_split(job.env_id, seeds, kwargs)
        built.agent = FixedSplitAgent(job.env, int(split))
    return 0


def _build_threshold(job: TrainJob) -> Built:
    from agents.baselines import SNRThresholdAgent

    hp = dict(job.hyperparams or {})
    if job.n_timesteps is not None:
        hp.setdefault("num_steps", job.n_timesteps)
    steps = hp.get("num_steps", 500)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"threshold: num_steps must be an integer >= 1, got {steps!r}")
    return Built(SNRThresholdAgent(job.env), steps, hp)


def _fit_threshold(job: TrainJob, built: Built) -> int:
    built.agent.fit(built.steps, seed=job.seed)
    return built.agent.quality_evals


def _no_fit(job: TrainJob, built: Built) -> int:
    return 0


def _save_sb3(model: Any, path: Path, record: dict) -> None:
    from agents.sb3 import save_sb3

    save_sb3(model, path, record["algo"], record["hyperparams"], record["seed"])


def _load_sb3(algo: str) -> Callable[[Path, gym.Env | None], Any]:
    def load(path: Path, env: gym.Env | None) -> Any:
        from agents.sb3 import load_sb3

        return load_sb3(path, env, algo=algo)

    return load


def _keys(*names: str) -> Callable[[], list[str]]:
    return lambda: list(names)


def _build_cell_planner(job: TrainJob) -> Built:
    from agents.cell import CellPlannerAgent

    hp = dict(job.hyperparams or {})
    return Built(CellPlannerAgent(job.env, **hp), 0, hp)


def _build_cell_selfish(job: TrainJob) -> Built:
    from agents.cell import SelfishAgent

    return Built(SelfishAgent(job.env), 0, dict(job.hyperparams or {}))


def _build_cell_random(job: TrainJob) -> Built:
    from agents.cell import CellRandomAgent

    return Built(CellRandomAgent(job.env, seed=job.seed), 0, dict(job.hyperparams or {}))


def _build_cell_fixed(job: TrainJob) -> Built:
    from agents.cell import CellFixedAgent

    hp = dict(job.hyperparams or {})
    split = hp.get("split")
    # no split given: `_fit_cell_fixed` picks the best one
    return Built(CellFixedAgent(job.env, split) if split is not None else None, 0, hp)


def _fit_cell_fixed(job: TrainJob, built: Built) -> int:
    from agents.cell import CellFixedAgent
    from agents.common.evaluation import best_fixed_split

    if built.agent is None:  # every UE at the best fixed split on the team return (privileged, like `fixed`'s)
        seeds = [10_000_000 + job.seed * 1000 + ep for ep in range(BEST_FIXED_EPISODES)]
        split, _ = best_fixed_split(job.env_id, seeds, job.env_kwargs)
        built.agent = CellFixedAgent(job.env, int(split))
    return 0


REGISTRY: dict[str, AlgoEntry] = {
    "mbrl": AlgoEntry("agents.mbrl.agent", "MBRLAgent", _build_mbrl, _fit_mbrl, "agent.pt",
                      _own_keys("agents.mbrl.agent", "MBRLAgent"), yaml=True),
    # PPO and A2C act on MultiDiscrete (the cell's centralised env); DQN needs a Discrete action, and MaskablePPO's
    # table has no cell entry (the cell's masks are static: its excluded splits)
    **{a: AlgoEntry("agents.sb3", cls, _build_sb3, _fit_sb3, "agent.zip", _sb3_keys(a), yaml=True,
                    save=_save_sb3, load=_load_sb3(a), envs=(SINGLE, CELL) if a in ("ppo", "a2c") else (SINGLE,))
       for a, cls in zip(SB3_ALGOS, ("PPO", "A2C", "DQN", "MaskablePPO"), strict=True)},
    "rsm_ppo": AlgoEntry("agents.rsm.agent", "RSMPPOAgent", _build_rsm, _fit_rsm, "agent.zip",
                         _own_keys("agents.rsm.agent", "RSMPPOAgent"), yaml=True),
    "rllib_ppo": AlgoEntry("agents.rllib_ppo", "RLlibPPOAgent", _build_rllib, _fit_rllib, "agent.zip", _rllib_keys,
                           yaml=True, load=_load_rllib, envs=(SINGLE, CELL)),
    "oracle": AlgoEntry("agents.baselines", "OracleAgent", _build_oracle, _no_fit, "agent.json", _keys(),
                        uses_budget=False),
    "random": AlgoEntry("agents.baselines", "RandomAgent", _build_random, _no_fit, "agent.json", _keys(),
                        uses_budget=False),
    "fixed": AlgoEntry("agents.baselines", "FixedSplitAgent", _build_fixed, _fit_fixed, "agent.json",
                       _keys("split"), uses_budget=False),
    "threshold": AlgoEntry("agents.baselines", "SNRThresholdAgent", _build_threshold, _fit_threshold, "agent.json",
                           _keys("num_steps")),
    "cell_planner": AlgoEntry("agents.cell", "CellPlannerAgent", _build_cell_planner, _no_fit, "agent.json",
                              _keys("max_sweeps", "backlog_weight"), uses_budget=False, envs=(CELL,)),
    "cell_selfish": AlgoEntry("agents.cell", "SelfishAgent", _build_cell_selfish, _no_fit, "agent.json", _keys(),
                              uses_budget=False, envs=(CELL,)),
    "cell_fixed": AlgoEntry("agents.cell", "CellFixedAgent", _build_cell_fixed, _fit_cell_fixed, "agent.json",
                            _keys("split"), uses_budget=False, envs=(CELL,)),
    "cell_random": AlgoEntry("agents.cell", "CellRandomAgent", _build_cell_random, _no_fit, "agent.json", _keys(),
                             uses_budget=False, envs=(CELL,)),
}  # fmt: skip
ALGOS = tuple(REGISTRY)


def env_kind(env: gym.Env) -> str:
    """`CELL` for the edge cell's centralised env, else `SINGLE`."""
    from agents.common.evaluation import is_cell_env

    return CELL if is_cell_env(env) else SINGLE


def algos_for(kind: str) -> tuple[str, ...]:
    """The algos that can act on envs of ``kind``, in registry order."""
    return tuple(a for a, e in REGISTRY.items() if kind in e.envs)


def check_env_kind(algo: str, env: gym.Env, env_id: str | None = None) -> None:
    """``ValueError`` if ``algo`` cannot act on ``env`` (`AlgoEntry.envs`), naming the env and the algos that can."""
    entry = _entry(algo)
    kind = env_kind(env)
    if kind not in entry.envs:
        name = env_id or getattr(getattr(env, "spec", None), "id", None) or type(env.unwrapped).__name__
        raise ValueError(f"{algo} cannot act on {name}, {KIND_NAMES[kind]}; it acts on "
                         f"{' and '.join(KIND_NAMES[k] for k in entry.envs)}. Algos for {name}: "
                         f"{', '.join(algos_for(kind))}")  # fmt: skip


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
    on_point: Callable[[dict], None] | None = None,
) -> TrainRecord:
    """Build ``algo``, train it on ``env_id`` and save it under ``out_dir``; return the record.

    Learning agents are scored by ``scorer`` every ``eval_freq`` steps (default: a tenth of the budget), or, with
    ``eval_at``, whenever their real-evaluation count first reaches each of those numbers (the same schedule for
    every agent, as the sample-efficiency benchmark needs). ``on_point`` gets each curve point as it is scored
    (`agents.zoo.sweep` reports them to Ray Tune).
    """
    entry = _entry(algo)
    if eval_freq is not None and (isinstance(eval_freq, bool) or not isinstance(eval_freq, int) or eval_freq < 1):
        raise ValueError(f"eval_freq must be an integer >= 1, got {eval_freq!r}")
    check_hyperparams(algo, hyperparams or {}, entry.hyperparam_keys())
    check_values(algo, hyperparams or {})
    out = Path(out_dir)
    env = make_env(env_id, env_kwargs)
    check_env_kind(algo, env, env_id)
    out.mkdir(parents=True, exist_ok=True)
    curve: list[dict] = []
    t0 = time.perf_counter()

    def point(agent, evals: int) -> dict[str, float]:
        res = scorer(agent)
        p = {"mean_reward": float(res["mean_return"]), "normalized_score": float(res["normalized_score"])}
        # the edge cell's own figures (`evaluate_agent`): on the curve and as eval/* tags beside the return
        p |= {k: float(res[k]) for k in ("offload_share", "deadline_miss_rate") if k in res}
        curve.append({"quality_evals": int(evals), **p})
        if on_point is not None:
            on_point(dict(curve[-1]))
        return p

    job = TrainJob(algo, env, env_id, env_kwargs, seed, n_timesteps, tensorboard_log, eval_freq, eval_at, progress_bar,
                   hyperparams, point if scorer is not None else None)  # fmt: skip
    built = entry.build(job)
    evals = entry.fit(job, built)
    train_s = time.perf_counter() - t0
    path = (out / entry.file_name).resolve()  # absolute: evaluate.py may run from elsewhere
    record = TrainRecord(algo, env_id, seed, str(path), int(evals), train_s, int(built.steps), curve,
                         _jsonable(built.hp))  # fmt: skip
    save = functools.partial(entry.save, built.agent, record={"algo": algo, "hyperparams": built.hp, "seed": seed})
    try:
        save(path=path)
    except OSError as e:  # a full or failing disk after the work: keep the work elsewhere and say where
        raise rescue_save(save, entry.file_name, record, e) from e
    return record


#: where a trained agent goes when its own folder cannot take it: ``$LLMSPLIT_RESCUE_DIR``, else a ``rescued``
#: folder in the user cache, the system's temporary folder or the home folder (the first that takes it)
RESCUE_ENV_VAR = "LLMSPLIT_RESCUE_DIR"


def rescue_save(save: Callable[..., None], file_name: str, record: TrainRecord, error: OSError) -> SaveFailed:
    """Save the agent (``save(path=...)``) and its training record to the first rescue folder that takes them; the
    `SaveFailed` to raise, naming the failed path, the reason and where the work now is."""
    import contextlib
    import os
    import shutil
    import tempfile

    from llmsplit_env.util.cache import cache_dir
    from llmsplit_env.util.files import atomic_write_json

    target = Path(record.path)
    env_root = os.environ.get(RESCUE_ENV_VAR)
    bases = [lambda: Path(env_root)] if env_root else []
    bases += [lambda: cache_dir("rescued"), lambda: Path(tempfile.gettempdir()) / "llmsplit-rescued",
              lambda: Path.home() / "llmsplit-rescued"]  # fmt: skip
    name = f"{record.algo}_seed{record.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    tried = []
    for base in bases:
        folder = None
        try:
            folder = base() / name
            folder.mkdir(parents=True, exist_ok=True)
            save(path=folder / file_name)
            atomic_write_json(folder / "train_record.json", record.to_json())
        except OSError as e:
            tried.append(f"{folder or 'the user cache'} ({e.strerror or e})")
            if folder is not None:  # leave nothing behind where the rescue failed
                shutil.rmtree(folder, ignore_errors=True)
                with contextlib.suppress(OSError):
                    folder.parent.rmdir()  # only if empty
            continue
        return SaveFailed(
            f"could not save the trained {record.algo} agent to {target} ({error.strerror or error}); it was saved "
            f"to {folder / file_name} with its training record (train_record.json: real evaluations, curve, "
            f"hyperparameters) instead. Free space, then move it: mv {folder / file_name} {target} (the run's "
            "summary.json has no entry for it; train again to get one)"
        )
    return SaveFailed(
        f"could not save the trained {record.algo} agent to {target} ({error.strerror or error}), nor to any rescue "
        f"folder: {'; '.join(tried)}. The training is lost: free space (or set ${RESCUE_ENV_VAR}) and train again"
    )


def check_agent(
    algo: str,
    env: gym.Env,
    env_id: str,
    seed: int = 0,
    n_timesteps: int | None = None,
    hyperparams: dict | None = None,
) -> None:
    """Build ``algo`` on ``env`` as `train_agent` would, without training or saving it: ``ValueError`` for a bad
    hyperparameter (name, value, policy_kwargs) or budget, before any work."""
    entry = _entry(algo)
    check_env_kind(algo, env, env_id)
    check_hyperparams(algo, hyperparams or {}, entry.hyperparam_keys())
    check_values(algo, hyperparams or {})
    job = TrainJob(algo, env, env_id, None, seed, n_timesteps, None, None, None, False, hyperparams, None)
    try:
        entry.build(job)
    except TypeError as e:  # a constructor given a value of the wrong kind
        raise ValueError(f"{algo}: {e}") from None


def load_agent(algo: str, path: str | Path, env: gym.Env | None = None):
    """Load an agent saved by `train_agent` (heuristics need ``env``; an algo that cannot act on ``env`` is refused)."""
    entry = _entry(algo)
    if env is not None:
        check_env_kind(algo, env)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no saved {algo} agent at {str(path)!r}")
    try:
        return entry.load_agent(path, env)
    except Exception as e:  # a damaged or foreign file: one error that names it, whatever the format's parser raised
        if isinstance(e, (ValueError, FileNotFoundError)) and str(path) in str(e):
            raise
        raise ValueError(f"{path} is not a loadable saved {algo} agent ({type(e).__name__}: {e})") from None


def _jsonable(d: dict) -> dict:
    return json.loads(json.dumps(d, default=str))
