"""One TensorBoard tag tree for every agent, reward-component and cost logging, and oracle-normalised evaluation.

Tag tree (the same for SB3 agents, RSM-PPO and the MBRL agent, so runs compare side by side):

| tag                    | what                                                                                 |
|------------------------|--------------------------------------------------------------------------------------|
| ``rollout/*``          | episode statistics (``ep_rew_mean``, ``ep_len_mean``; SB3's, or the same keys)        |
| ``reward/<component>`` | mean per-step ``info["rewards"][<component>]`` (unweighted), episodes since last dump |
| ``model/*``            | SB3's ``train/*`` keys mirrored (`TagTreeLogger`), surrogate / model fit statistics   |
| ``cost/quality_evals`` | real quality evaluations spent by training so far                                    |
| ``eval/*``             | ``mean_reward``, ``normalized_score``, ``quality_evals`` on fixed held-out seeds     |

**Counting real quality evaluations** (`RewardComponentCallback`, ``count``):

* ``"steps"``: one per env step (``num_timesteps``). This is the count for profile-backed envs: a profile step stands
  for one evaluation of the real model (the profile was measured from it), so agents compare by the evaluations the
  live env would have cost them.
* ``"info"``: the sum of the increments of ``info["quality_evals"]`` (each env's running count of the live model's
  forward passes). Used for the live-LLM env, where a step at ``k = L`` costs nothing and a reset with the paper terms
  costs one.
* ``"none"``: a constant ``initial_evals`` (training inside a learned surrogate, e.g. RSM-PPO's PPO phase, costs no
  real evaluations).
* ``"auto"`` (default): ``"none"`` if the training env is a surrogate (attribute ``is_surrogate_env``), ``"info"`` if
  its config names ``backend: llm``, else ``"steps"``.

Oracle-normalised score: ``(R − R_random) / (R_oracle − R_random)`` with ``R_random`` (`agents.baselines.RandomAgent`,
seed 0) and ``R_oracle`` (`agents.baselines.OracleAgent`) measured once on the same seeds as ``R``.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import HumanOutputFormat, KVWriter, Logger, TensorBoardOutputFormat
from stable_baselines3.common.utils import get_latest_run_id

import llmsplit_env  # noqa: F401  (registers the env ids)

COUNT_MODES = ("auto", "steps", "info", "none")
# Keys under ``train/`` that SB3 writes; `TagTreeLogger` mirrors them under ``model/``.
_SB3_TRAIN_PREFIX = "train/"
_MODEL_PREFIX = "model/"


# --------------------------------------------------------------------------------------------------- loggers
class TagTreeLogger(Logger):
    """SB3 `Logger` that, on every dump, mirrors the ``train/*`` keys as ``model/*`` (the shared tag tree).

    ``keep_train=False`` drops the ``train/*`` originals (by default both are written, so SB3 users still find theirs).
    """

    def __init__(self, folder: str | None, output_formats: list[KVWriter], keep_train: bool = True) -> None:
        super().__init__(folder, output_formats)
        self.keep_train = keep_train

    @classmethod
    def wrap(cls, logger: Logger, keep_train: bool = True) -> TagTreeLogger:
        """A `TagTreeLogger` sharing ``logger``'s folder, outputs and pending values (records through either land in
        the same dump), so callbacks that still hold the old object keep working."""
        if isinstance(logger, TagTreeLogger):
            return logger
        new = cls(logger.dir, logger.output_formats, keep_train=keep_train)
        new.name_to_value = logger.name_to_value
        new.name_to_count = logger.name_to_count
        new.name_to_excluded = logger.name_to_excluded
        new.level = logger.level
        return new

    def dump(self, step: int = 0) -> None:
        for key in [k for k in self.name_to_value if k.startswith(_SB3_TRAIN_PREFIX)]:
            mirrored = _MODEL_PREFIX + key[len(_SB3_TRAIN_PREFIX) :]
            self.name_to_value[mirrored] = self.name_to_value[key]
            self.name_to_excluded[mirrored] = self.name_to_excluded.get(key, ("",))
            if not self.keep_train:
                del self.name_to_value[key]
                self.name_to_excluded.pop(key, None)
        super().dump(step)


def configure_logger(log_root: str | None, run_name: str, verbose: int = 0, keep_train: bool = True) -> TagTreeLogger:
    """A `TagTreeLogger` writing TensorBoard events to ``<log_root>/<run_name>_<n>`` (SB3 naming: ``n`` is the next
    free index), plus stdout when ``verbose >= 1``. ``log_root=None``: no files (stdout only with ``verbose >= 1``).
    """
    if not isinstance(run_name, str) or not run_name or os.sep in run_name:
        raise ValueError(f"run_name must be a non-empty name without {os.sep!r}, got {run_name!r}")
    formats: list[KVWriter] = []
    folder = None
    if log_root is not None:
        log_root = os.fspath(log_root)
        folder = os.path.join(log_root, f"{run_name}_{get_latest_run_id(log_root, run_name) + 1}")
        os.makedirs(folder, exist_ok=True)
        formats.append(TensorBoardOutputFormat(folder))
    if verbose >= 1:
        formats.append(HumanOutputFormat(sys.stdout))
    return TagTreeLogger(folder, formats, keep_train=keep_train)


# ------------------------------------------------------------------------------------------ reward components
class RewardComponentTracker:
    """Per-episode sums of ``info["rewards"]`` components and the real-evaluation count, for any training loop.

    ``update(infos, dones)`` after every (vector) step; ``record(logger)`` writes ``reward/<c>`` for the episodes
    finished since the last ``reset_window()`` and ``cost/quality_evals``. Episodes are tracked per env index.
    """

    def __init__(self, count: str = "steps", initial_evals: int = 0) -> None:
        if count not in COUNT_MODES[1:]:
            raise ValueError(f"count must be one of {COUNT_MODES[1:]}, got {count!r}")
        if isinstance(initial_evals, bool) or int(initial_evals) != initial_evals or initial_evals < 0:
            raise ValueError(f"initial_evals must be a non-negative integer, got {initial_evals!r}")
        self.count = count
        self.initial_evals = int(initial_evals)
        self.steps = 0
        self.info_evals = 0
        self._last_info_count: dict[int, int] = {}
        self._ep_sums: dict[int, dict[str, float]] = {}
        self._ep_len: dict[int, int] = {}
        self._win_sums: dict[str, float] = {}
        self._win_steps = 0
        self.episodes = 0

    @property
    def quality_evals(self) -> int:
        """Real quality evaluations spent so far (by the ``count`` rule, plus ``initial_evals``)."""
        if self.count == "steps":
            return self.initial_evals + self.steps
        if self.count == "info":
            return self.initial_evals + self.info_evals
        return self.initial_evals

    def update(self, infos: Sequence[dict], dones: Sequence[bool] | np.ndarray) -> int:
        """Account one step of every env; returns how many episodes finished."""
        finished = 0
        for i, info in enumerate(infos):
            self.steps += 1
            qe = info.get("quality_evals")
            if qe is not None:
                # The env's counter is cumulative; a drop means a new env instance (or a reset counter).
                last = self._last_info_count.get(i, 0)
                self.info_evals += int(qe) - last if qe >= last else int(qe)
                self._last_info_count[i] = int(qe)
            comps = info.get("rewards")
            if comps:
                sums = self._ep_sums.setdefault(i, {})
                for c, v in comps.items():
                    sums[c] = sums.get(c, 0.0) + float(v)
            self._ep_len[i] = self._ep_len.get(i, 0) + 1
            if dones[i]:
                finished += 1
                self.episodes += 1
                for c, v in self._ep_sums.pop(i, {}).items():
                    self._win_sums[c] = self._win_sums.get(c, 0.0) + v
                self._win_steps += self._ep_len.pop(i, 0)
        return finished

    def window_means(self) -> dict[str, float]:
        """Mean per-step component values over the episodes finished since the last ``reset_window``."""
        if self._win_steps == 0:
            return {}
        return {c: v / self._win_steps for c, v in self._win_sums.items()}

    def reset_window(self) -> None:
        self._win_sums, self._win_steps = {}, 0

    def record(self, logger: Logger) -> None:
        for c, v in self.window_means().items():
            logger.record(f"reward/{c}", v)
        logger.record("cost/quality_evals", self.quality_evals)


# Which tracker counts a model's real evaluations (so an eval callback can log ``eval/quality_evals``).
_COUNTERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _detect_count_mode(venv: Any) -> str:
    try:
        if all(bool(v) for v in venv.get_attr("is_surrogate_env")):
            return "none"
    except (AttributeError, NotImplementedError):
        pass
    try:
        cfgs = venv.get_attr("config")
    except (AttributeError, NotImplementedError):
        return "steps"
    if any(isinstance(c, dict) and c.get("backend") == "llm" for c in cfgs):
        return "info"
    return "steps"


class RewardComponentCallback(BaseCallback):
    """Logs ``reward/<component>`` (mean per-step value over the episodes finished since the last dump) and
    ``cost/quality_evals`` (real quality evaluations spent so far; see the module doc for ``count``).

    It also turns the model's logger into a `TagTreeLogger` (``train/*`` mirrored as ``model/*``), so an SB3 model
    gets the whole tag tree from this one callback.

    :param count: ``"auto"``, ``"steps"``, ``"info"`` or ``"none"`` (module doc)
    :param initial_evals: evaluations already spent before this training (e.g. RSM-PPO's ``n_real``)
    """

    def __init__(self, count: str = "auto", initial_evals: int = 0, verbose: int = 0) -> None:
        super().__init__(verbose)
        if count not in COUNT_MODES:
            raise ValueError(f"count must be one of {COUNT_MODES}, got {count!r}")
        self.count = count
        self.initial_evals = int(initial_evals)
        RewardComponentTracker("steps", self.initial_evals)  # validates initial_evals
        self.tracker: RewardComponentTracker | None = None
        self._start_timesteps = 0

    @property
    def quality_evals(self) -> int:
        return self.initial_evals if self.tracker is None else self._evals()

    def _evals(self) -> int:
        assert self.tracker is not None
        if self.tracker.count == "steps":
            # num_timesteps (not the tracker's own step count): continues across learn() calls like SB3's counter
            return self.initial_evals + self.num_timesteps
        return self.tracker.quality_evals

    def _init_callback(self) -> None:
        # Private attribute on purpose: `set_logger` would also flag the logger as custom, changing how later
        # learn() calls name their TensorBoard runs.
        self.model._logger = TagTreeLogger.wrap(self.model.logger)
        mode = self.count if self.count != "auto" else _detect_count_mode(self.training_env)
        if self.tracker is None or self.tracker.count != mode:
            self.tracker = RewardComponentTracker(mode, self.initial_evals)
        _COUNTERS[self.model] = self

    def _on_step(self) -> bool:
        infos = self.locals.get("infos")
        dones = self.locals.get("dones")
        if infos is None or dones is None:
            return True
        tr = self.tracker
        assert tr is not None
        # A dump clears the logger's pending values: if our key is gone, start a new window of episodes.
        if "cost/quality_evals" not in self.logger.name_to_value:
            tr.reset_window()
        if tr.update(infos, dones):
            for c, v in tr.window_means().items():
                self.logger.record(f"reward/{c}", v)
        self.logger.record("cost/quality_evals", self._evals())
        return True


# ------------------------------------------------------------------------------------------------ evaluation
def normalized_score(R: float | np.ndarray, R_random: float, R_oracle: float) -> float | np.ndarray:
    """Oracle-normalised score ``(R − R_random) / (R_oracle − R_random)``: 0 = random, 1 = oracle.

    Raises ``ValueError`` if the oracle does not beat random (the score would be undefined or flipped).
    """
    R_random, R_oracle = float(R_random), float(R_oracle)
    if not (np.isfinite(R_random) and np.isfinite(R_oracle)):
        raise ValueError(f"R_random and R_oracle must be finite, got {R_random!r}, {R_oracle!r}")
    if R_oracle <= R_random:
        raise ValueError(
            f"normalized_score needs R_oracle > R_random, got R_oracle={R_oracle!r} <= R_random={R_random!r}"
        )
    out = (np.asarray(R, dtype=np.float64) - R_random) / (R_oracle - R_random)
    return float(out) if out.ndim == 0 else out


def make_eval_env(env_id_or_factory: str | Callable[[], gym.Env] | gym.Env, env_kwargs: dict | None = None) -> gym.Env:
    """An env from an id (``gym.make``), a factory (called with ``**env_kwargs`` if given) or an instance (as is).

    With an id, ``env_kwargs`` holding ``config`` or ``render_mode`` are `gym.make` keyword arguments; any other
    dict is the env's config (``gym.make(id, config=env_kwargs)``).
    """
    if isinstance(env_id_or_factory, gym.Env):
        return env_id_or_factory
    if isinstance(env_id_or_factory, str):
        if env_id_or_factory not in gym.registry:
            known = ", ".join(i for i in gym.registry if i.startswith("LLMSplit"))
            raise ValueError(f"unknown env id {env_id_or_factory!r}; registered LLMSplit ids: {known}")
        kw = dict(env_kwargs or {})
        if kw and not ({"config", "render_mode"} & set(kw)):
            kw = {"config": kw}
        return gym.make(env_id_or_factory, **kw)
    if callable(env_id_or_factory):
        env = env_id_or_factory(**env_kwargs) if env_kwargs else env_id_or_factory()
        if not isinstance(env, gym.Env):
            raise ValueError(f"the env factory returned {type(env).__name__}, not a gymnasium.Env")
        return env
    raise ValueError(f"expected an env id, a factory or a gymnasium.Env, got {type(env_id_or_factory).__name__}")


def lifetime_quality_evals(env: gym.Env) -> int:
    """Real LLM evaluations the env's quality backend has run in its lifetime (0 for envs that do not count).

    ``info["quality_evals"]`` restarts at every seeded reset; differences of this total count everything between two
    points, resets included.
    """
    u = env.unwrapped
    total = getattr(u, "total_quality_evals", None)
    if total is None:
        total = getattr(getattr(u, "quality_backend", None), "evaluations", 0)
    return int(total)


def _accepts(fn: Callable, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def evaluate_agent(
    agent_or_predict_fn: Any,
    env_id_or_factory: str | Callable[[], gym.Env] | gym.Env,
    seeds: Sequence[int],
    env_kwargs: dict | None = None,
    deterministic: bool = True,
    trace: bool = False,
) -> dict[str, Any]:
    """Run one whole episode per seed (``env.reset(seed=s)``) and summarise.

    ``agent_or_predict_fn`` is anything with SB3's ``predict(obs, state, episode_start, deterministic)``
    (``action_masks`` is passed when its ``predict`` accepts it, as in MaskablePPO), or a callable ``obs -> action``.
    Privileged agents (``privileged = True``, e.g. `agents.baselines.OracleAgent`) are re-bound with
    ``set_env(env)`` to the evaluation env, since they read its true state.

    :return: ``mean_return``, ``std_return``, ``returns`` (``[n]``), ``mean_length``, ``mean_ppl`` (over steps),
        ``split_counts`` (``{split: steps}``), ``mean_components`` (per-step means of ``info["rewards"]``),
        ``quality_evals`` (real evaluations the evaluation itself ran, resets included: live env only), ``seeds``;
        with ``trace=True`` also ``levels`` (observed level, ``obs[0]``, at each decision) and ``step_splits``
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must name at least one episode seed")
    env = make_eval_env(env_id_or_factory, env_kwargs)
    u = env.unwrapped
    if getattr(agent_or_predict_fn, "privileged", False):
        agent_or_predict_fn.set_env(env)
    predict = getattr(agent_or_predict_fn, "predict", None)
    if predict is None:
        if not callable(agent_or_predict_fn):
            raise ValueError(
                f"expected an agent with predict() or a callable, got {type(agent_or_predict_fn).__name__}"
            )
        fn = agent_or_predict_fn

        def predict(obs, state=None, episode_start=None, deterministic=True, **_):
            out = fn(obs)
            return (out[0], None) if isinstance(out, tuple) else (out, None)

    with_masks = hasattr(u, "action_masks") and _accepts(predict, "action_masks")
    returns, lengths = [], []
    ppl_sum, n_steps = 0.0, 0
    comp_sums: dict[str, float] = {}
    splits = list(getattr(u, "allowed_splits", []))
    split_counts: dict[int, int] = {int(k): 0 for k in splits}
    evals_start = lifetime_quality_evals(env)
    levels: list[float] = []
    step_splits: list[int] = []
    try:
        for seed in seeds:
            obs, info = env.reset(seed=seed)
            state, episode_start = None, np.ones((1,), dtype=bool)
            done, ret, length = False, 0.0, 0
            while not done:
                kwargs = {"action_masks": u.action_masks()} if with_masks else {}
                action, state = predict(
                    obs, state=state, episode_start=episode_start, deterministic=deterministic, **kwargs
                )
                a = np.asarray(action).reshape(-1)
                if a.size != 1:
                    raise ValueError(f"the agent returned {a.size} actions for one observation")
                if trace:
                    levels.append(float(np.asarray(obs).reshape(-1)[0]))
                obs, reward, terminated, truncated, info = env.step(int(a[0]))
                if trace:
                    step_splits.append(int(info["split"]))
                episode_start = np.zeros((1,), dtype=bool)
                ret += float(reward)
                length += 1
                done = terminated or truncated
                if "ppl" in info:
                    ppl_sum += float(info["ppl"])
                if "split" in info:
                    split_counts[int(info["split"])] = split_counts.get(int(info["split"]), 0) + 1
                for c, v in info.get("rewards", {}).items():
                    comp_sums[c] = comp_sums.get(c, 0.0) + float(v)
            returns.append(ret)
            lengths.append(length)
            n_steps += length
    finally:
        if isinstance(env_id_or_factory, str):  # we made it; factories' envs may be shared
            env.close()
    arr = np.asarray(returns, dtype=np.float64)
    extra = {"levels": np.asarray(levels), "step_splits": np.asarray(step_splits)} if trace else {}
    return extra | {
        "mean_return": float(arr.mean()),
        "std_return": float(arr.std()),
        "returns": arr,
        "mean_length": float(np.mean(lengths)),
        "mean_ppl": ppl_sum / n_steps if n_steps else float("nan"),
        "split_counts": dict(sorted(split_counts.items())),
        "mean_components": {c: v / n_steps for c, v in comp_sums.items()},
        "quality_evals": lifetime_quality_evals(env) - evals_start,
        "seeds": seeds,
    }


_REFERENCE_CACHE: dict[str, tuple[float, float]] = {}


class OracleNormalizer:
    """``R_random`` and ``R_oracle`` on fixed seeds (computed once, cached per env id, env kwargs and seeds), and the
    oracle-normalised evaluation of any agent on the same seeds.

    :param env: env id, factory or instance (an instance is reused for every evaluation)
    :param seeds: evaluation episode seeds
    :param env_kwargs: see `make_eval_env`
    """

    def __init__(
        self,
        env: str | Callable[[], gym.Env] | gym.Env,
        seeds: Sequence[int],
        env_kwargs: dict | None = None,
    ) -> None:
        self.env_spec = env
        self.env_kwargs = env_kwargs
        self.seeds = [int(s) for s in seeds]
        if not self.seeds:
            raise ValueError("seeds must name at least one episode seed")
        self._env = make_eval_env(env, env_kwargs)
        self._key = (
            json.dumps([env, env_kwargs, self.seeds], sort_keys=True, default=str) if isinstance(env, str) else None
        )
        self._ref: tuple[float, float] | None = None

    @property
    def reference(self) -> tuple[float, float]:
        """``(R_random, R_oracle)``: mean returns of `RandomAgent` (seed 0) and `OracleAgent` on the seeds."""
        if self._ref is None:
            if self._key is not None and self._key in _REFERENCE_CACHE:
                self._ref = _REFERENCE_CACHE[self._key]
            else:
                from agents.baselines import OracleAgent, RandomAgent

                r_rand = evaluate_agent(RandomAgent(self._env, seed=0), self._env, self.seeds)["mean_return"]
                r_orc = evaluate_agent(OracleAgent(self._env), self._env, self.seeds)["mean_return"]
                self._ref = (float(r_rand), float(r_orc))
                if self._key is not None:
                    _REFERENCE_CACHE[self._key] = self._ref
        return self._ref

    def evaluate(self, agent: Any, deterministic: bool = True) -> dict[str, Any]:
        """`evaluate_agent` on the seeds, plus ``normalized_score``, ``R_random`` and ``R_oracle``."""
        res = evaluate_agent(agent, self._env, self.seeds, deterministic=deterministic)
        r_rand, r_orc = self.reference
        res["normalized_score"] = normalized_score(res["mean_return"], r_rand, r_orc)
        res["R_random"], res["R_oracle"] = r_rand, r_orc
        return res

    __call__ = evaluate


class OracleNormalisedEvalCallback(BaseCallback):
    """Every ``eval_freq`` training steps (``num_timesteps``, all envs together) evaluate the model on a separate env
    for ``n_eval_episodes`` fixed seeds; record ``eval/mean_reward``, ``eval/std_reward``, ``eval/normalized_score``,
    ``eval/mean_ppl`` and ``eval/quality_evals`` (real evaluations training has spent so far), then dump.

    The training-evaluation count comes from ``quality_evals`` (a `RewardComponentCallback` or a callable) if given,
    else from the `RewardComponentCallback` attached to the same model, else ``num_timesteps``.

    :param eval_env: env id, factory or instance (not the training env: evaluation must not disturb training episodes)
    :param eval_freq: training steps between evaluations
    :param n_eval_episodes: episodes per evaluation (seeds ``seed_offset .. seed_offset + n − 1`` unless ``seeds``)
    :param seeds: explicit evaluation seeds (overrides ``n_eval_episodes`` and ``seed_offset``)
    :param eval_at_start: also evaluate before the first step (a point at 0 evaluations on the learning curve)
    """

    def __init__(
        self,
        eval_env: str | Callable[[], gym.Env] | gym.Env,
        eval_freq: int = 10_000,
        n_eval_episodes: int = 10,
        seeds: Sequence[int] | None = None,
        seed_offset: int = 1_000_000,
        env_kwargs: dict | None = None,
        quality_evals: RewardComponentCallback | Callable[[], int] | None = None,
        deterministic: bool = True,
        eval_at_start: bool = False,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        if isinstance(eval_freq, bool) or int(eval_freq) != eval_freq or eval_freq < 1:
            raise ValueError(f"eval_freq must be a positive integer, got {eval_freq!r}")
        if seeds is None:
            if isinstance(n_eval_episodes, bool) or int(n_eval_episodes) != n_eval_episodes or n_eval_episodes < 1:
                raise ValueError(f"n_eval_episodes must be a positive integer, got {n_eval_episodes!r}")
            seeds = range(int(seed_offset), int(seed_offset) + int(n_eval_episodes))
        self.normalizer = OracleNormalizer(eval_env, seeds, env_kwargs)
        self.eval_freq = int(eval_freq)
        self.deterministic = deterministic
        self.eval_at_start = eval_at_start
        self._counter = quality_evals
        self._next_eval = self.eval_freq
        self.last_result: dict[str, Any] | None = None
        self.results: list[dict[str, Any]] = []  # [{timesteps, quality_evals, mean_reward, normalized_score}]

    def _training_evals(self) -> int:
        c = self._counter
        if c is None:
            c = _COUNTERS.get(self.model)
        if c is None:
            return int(self.num_timesteps)
        return int(c.quality_evals if isinstance(c, RewardComponentCallback) else c())

    def _on_training_start(self) -> None:
        self._next_eval = (self.num_timesteps // self.eval_freq + 1) * self.eval_freq
        self.normalizer.reference  # noqa: B018  (measure the references before training, not inside a rollout)
        if self.eval_at_start:
            self._evaluate()

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next_eval:
            self._next_eval = (self.num_timesteps // self.eval_freq + 1) * self.eval_freq
            self._evaluate()
        return True

    def _evaluate(self) -> None:
        res = self.normalizer.evaluate(self.model, deterministic=self.deterministic)
        evals = self._training_evals()
        self.last_result = res
        self.results.append(
            {
                "timesteps": int(self.num_timesteps),
                "quality_evals": evals,
                "mean_reward": res["mean_return"],
                "normalized_score": res["normalized_score"],
            }
        )
        self.logger.record("eval/mean_reward", res["mean_return"])
        self.logger.record("eval/std_reward", res["std_return"])
        self.logger.record("eval/normalized_score", res["normalized_score"])
        self.logger.record("eval/mean_ppl", res["mean_ppl"])
        self.logger.record("eval/quality_evals", evals)
        if self.verbose >= 1:
            print(
                f"Eval num_timesteps={self.num_timesteps}: mean_reward={res['mean_return']:.3f} "
                f"normalized_score={res['normalized_score']:.3f} quality_evals={evals}"
            )
        self.logger.dump(self.num_timesteps)
