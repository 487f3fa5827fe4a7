"""Training callbacks of the shared tag tree (`agents.common.logger`): reward components, the real-evaluation count, and
evaluation during training.

* `RewardComponentTracker`: per-episode sums of ``info["rewards"]`` and the real-evaluation count, for any loop
  (the MBRL agent's own); `RewardComponentCallback`: the same as an SB3 callback.
* `OracleNormalisedEvalCallback`: ``eval/*`` on fixed held-out seeds every ``eval_freq`` steps.
* `CurveCallback`: the zoo's learning curve (x = real evaluations), on a frequency or a schedule of evaluation counts.

**Counting real quality evaluations** (`RewardComponentCallback`, ``count``):

* ``"sends"``: one per env step at a split that sends something (``info["split"] != local_split``, ``k = L``). This
  is the count for profile-backed envs: such a step stands for one evaluation of the real model (the profile was
  measured from it), and a step at ``k = L`` for none, as on the live env, so agents compare by the evaluations the
  live env would have cost them.
* ``"steps"``: one per env step (``num_timesteps``): profile envs with the paper terms (whose live twin also measures
  PPL₀ at resets; `agents.common.env_util.count_rule`).
* ``"info"``: the sum of the increments of ``info["quality_evals"]`` (each env's running count of the live model's
  forward passes). Used for the live-LLM env, where a step at ``k = L`` costs nothing and a reset with the paper terms
  costs one.
* ``"none"``: a constant ``initial_evals`` (training inside a learned surrogate, e.g. RSM-PPO's PPO phase, costs no
  real evaluations).
* ``"requests"``: one per request served (the sum of ``info["active"]``): the edge cell's count, where a step serves
  up to N requests, each standing for one evaluation of the real model as a profile step does.
* ``"auto"`` (default): ``"none"`` if the training env is a surrogate (attribute ``is_surrogate_env``), ``"requests"``
  if it is the edge cell (attribute ``n_ues``), else `agents.common.env_util.count_rule` of the env: ``"info"`` for
  the live backend, ``"sends"`` or ``"steps"`` for a profile.

**The edge cell** (``LLMSplit-Cell-v0``: ``info["rewards"]`` holds ``[N]`` arrays, ``info["active"]`` the UEs with a
request): ``reward/<c>`` is the mean per request (idle UEs' zeros left out), and the tracker adds ``cell/team_reward``
(mean per step), ``cell/deadline_miss_rate`` and ``cell/offload_share`` (per request) and ``ue/<i>/reward`` (UE i's
mean reward per step, idle steps counting 0, as in the team reward), over the same window of finished episodes.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger

from agents.common.env_util import CountRule, EnvLike, rule_for
from agents.common.evaluation import OracleNormalizer
from agents.common.logger import TagTreeLogger

COUNT_MODES = ("auto", "steps", "sends", "info", "none", "requests")


class RewardComponentTracker:
    """Per-episode sums of ``info["rewards"]`` components and the real-evaluation count, for any training loop.

    ``update(infos, dones)`` after every (vector) step; ``record(logger)`` writes ``reward/<c>`` (and on the edge cell
    the ``cell/*`` and ``ue/<i>/*`` tags, module doc) for the episodes finished since the last ``reset_window()`` and
    ``cost/quality_evals``. Episodes are tracked per env index.
    """

    def __init__(self, count: str = "steps", initial_evals: int = 0, local_split: int | None = None) -> None:
        if count not in COUNT_MODES[1:]:
            raise ValueError(f"count must be one of {COUNT_MODES[1:]}, got {count!r}")
        if isinstance(initial_evals, bool) or int(initial_evals) != initial_evals or initial_evals < 0:
            raise ValueError(f"initial_evals must be a non-negative integer, got {initial_evals!r}")
        if count == "sends" and (isinstance(local_split, bool) or not isinstance(local_split, int | np.integer)):
            raise ValueError(f"count 'sends' needs local_split, the split that sends nothing, got {local_split!r}")
        self.count = count
        self.initial_evals = int(initial_evals)
        self.local_split = None if local_split is None else int(local_split)
        self.steps = 0
        self.sends = 0
        self.requests = 0
        self.info_evals = 0
        self._last_info_count: dict[int, int] = {}
        self._ep_sums: dict[int, dict[str, float]] = {}
        self._ep_len: dict[int, int] = {}
        self._win_sums: dict[str, float] = {}
        self._win_steps = 0
        # the edge cell: per-request components (their denominator is the requests, not the steps) and the cell's sums
        self._per_request: set[str] = set()
        self._ep_cell: dict[int, dict[str, Any]] = {}
        self._win_cell: dict[str, Any] = {}
        self.episodes = 0

    @property
    def quality_evals(self) -> int:
        """Real quality evaluations spent so far (by the ``count`` rule, plus ``initial_evals``)."""
        if self.count == "steps":
            return self.initial_evals + self.steps
        if self.count == "sends":
            return self.initial_evals + self.sends
        if self.count == "info":
            return self.initial_evals + self.info_evals
        if self.count == "requests":
            return self.initial_evals + self.requests
        return self.initial_evals

    def update(self, infos: Sequence[dict], dones: Sequence[bool] | np.ndarray) -> int:
        """Account one step of every env; returns how many episodes finished."""
        finished = 0
        for i, info in enumerate(infos):
            self.steps += 1
            if self.local_split is not None and info.get("split", self.local_split) != self.local_split:
                self.sends += 1
            qe = info.get("quality_evals")
            if qe is not None:
                # The env's counter is cumulative; a drop means a new env instance (or a reset counter).
                last = self._last_info_count.get(i, 0)
                self.info_evals += int(qe) - last if qe >= last else int(qe)
                self._last_info_count[i] = int(qe)
            active = info.get("active")
            cell = active is not None and "team_reward" in info
            if cell:
                active = np.asarray(active, dtype=bool)
                self.requests += int(active.sum())
                self._update_cell(i, info, active)
            comps = info.get("rewards")
            if comps:
                sums = self._ep_sums.setdefault(i, {})
                for c, v in comps.items():
                    if cell and np.ndim(v):  # one value per UE: the requests' sum (idle UEs' zeros are no requests)
                        self._per_request.add(c)
                        v = np.asarray(v, dtype=np.float64)[active].sum()
                    sums[c] = sums.get(c, 0.0) + float(v)
            self._ep_len[i] = self._ep_len.get(i, 0) + 1
            if dones[i]:
                finished += 1
                self.episodes += 1
                for c, v in self._ep_sums.pop(i, {}).items():
                    self._win_sums[c] = self._win_sums.get(c, 0.0) + v
                self._win_steps += self._ep_len.pop(i, 0)
                for c, v in self._ep_cell.pop(i, {}).items():
                    self._win_cell[c] = self._win_cell.get(c, 0.0) + v
        return finished

    def _update_cell(self, i: int, info: dict, active: np.ndarray) -> None:
        sums = self._ep_cell.setdefault(i, {})
        step = {
            "team_reward": float(info["team_reward"]),
            "requests": int(active.sum()),
            "deadline_miss": int(np.sum(info.get("deadline_miss", 0))),
            "offloaded": int(np.sum(info.get("offloaded", 0))),
            "ue_reward": np.asarray(info["reward"], dtype=np.float64),
        }
        for c, v in step.items():
            sums[c] = sums.get(c, 0.0) + v

    def window_means(self) -> dict[str, float]:
        """Mean per-step component values over the episodes finished since the last ``reset_window`` (on the edge
        cell: per request)."""
        if self._win_steps == 0:
            return {}
        requests = self._win_cell.get("requests", 0)
        return {c: v / (requests if c in self._per_request else self._win_steps)
                for c, v in self._win_sums.items() if c not in self._per_request or requests}  # fmt: skip

    def cell_means(self) -> dict[str, float]:
        """The edge cell's tags over the same window (module doc): ``cell/team_reward``, ``cell/deadline_miss_rate``,
        ``cell/offload_share``, ``ue/<i>/reward``; empty for any other env or before an episode finished."""
        w = self._win_cell
        if not w or self._win_steps == 0:
            return {}
        out = {"cell/team_reward": w["team_reward"] / self._win_steps}
        if w["requests"]:
            out["cell/deadline_miss_rate"] = w["deadline_miss"] / w["requests"]
            out["cell/offload_share"] = w["offloaded"] / w["requests"]
        for ue, v in enumerate(np.asarray(w["ue_reward"]) / self._win_steps):
            out[f"ue/{ue}/reward"] = float(v)
        return out

    def reset_window(self) -> None:
        self._win_sums, self._win_steps, self._win_cell = {}, 0, {}

    def record(self, logger: Logger) -> None:
        for c, v in self.window_means().items():
            logger.record(f"reward/{c}", v)
        for tag, v in self.cell_means().items():
            logger.record(tag, v)
        logger.record("cost/quality_evals", self.quality_evals)


# Which tracker counts a model's real evaluations (so an eval callback can log ``eval/quality_evals``).
_COUNTERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _detect_count_rule(venv: Any) -> CountRule:
    try:
        if all(bool(v) for v in venv.get_attr("is_surrogate_env")):
            return CountRule("none")
    except (AttributeError, NotImplementedError):
        pass
    try:  # the edge cell (`LLMSplitCellEnv.n_ues`): its steps serve up to N requests each
        venv.get_attr("n_ues")
        return CountRule("requests")
    except (AttributeError, NotImplementedError):
        pass
    try:
        cfgs = venv.get_attr("config")
    except (AttributeError, NotImplementedError):
        return CountRule("steps")
    try:
        problems = venv.get_attr("problem")
    except (AttributeError, NotImplementedError):
        problems = [None] * len(cfgs)
    rules = {rule_for(c, p) for c, p in zip(cfgs, problems, strict=True)}
    if len(rules) != 1:
        raise ValueError(f"the training envs count real evaluations by different rules: {sorted(map(str, rules))}")
    return rules.pop()


class RewardComponentCallback(BaseCallback):
    """Logs ``reward/<component>`` (mean per-step value over the episodes finished since the last dump),
    ``cost/quality_evals`` (real quality evaluations spent so far; see the module doc for ``count``) and, on the edge
    cell, ``cell/*`` and ``ue/<i>/reward`` (module doc).

    It also turns the model's logger into a `TagTreeLogger` (``train/*`` mirrored as ``model/*``), so an SB3 model
    gets the whole tag tree from this one callback.

    :param count: ``"auto"``, ``"steps"``, ``"sends"``, ``"info"``, ``"none"`` or ``"requests"`` (module doc)
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
        logger = self.model.logger
        if type(logger) is Logger:  # SB3's own, made for this learn() call: mirror in place (`set_logger` would flag
            TagTreeLogger.adopt(logger)  # it as custom, changing how later learn() calls name their TensorBoard runs)
        elif not isinstance(logger, TagTreeLogger):  # a logger the user set (custom already)
            self.model.set_logger(TagTreeLogger.wrap(logger))
        if self.count == "auto":
            rule = _detect_count_rule(self.training_env)
        elif self.count == "sends":  # the split that sends nothing: the env's layer count
            problem = self.training_env.get_attr("problem")[0]
            rule = CountRule("sends", int(problem.num_layers))
        else:
            rule = CountRule(self.count)
        if self.tracker is None or (self.tracker.count, self.tracker.local_split) != (rule.mode, rule.local_split):
            self.tracker = RewardComponentTracker(rule.mode, self.initial_evals, rule.local_split)
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
            for tag, v in tr.cell_means().items():
                self.logger.record(tag, v)
        evals = self._evals()
        self.logger.record("cost/quality_evals", evals)
        self.model.quality_evals = evals  # the `Agent` protocol's count on the SB3 model
        return True


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
        eval_env: EnvLike,
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
        for key in ("offload_share", "deadline_miss_rate"):  # the edge cell's (`evaluate_agent`)
            if key in res:
                self.logger.record(f"eval/{key}", res[key])
        self.logger.record("eval/quality_evals", evals)
        if self.verbose >= 1:
            print(
                f"Eval num_timesteps={self.num_timesteps}: mean_reward={res['mean_return']:.3f} "
                f"normalized_score={res['normalized_score']:.3f} quality_evals={evals}"
            )
        self.logger.dump(self.num_timesteps)


class CurveCallback(BaseCallback):
    """Every ``eval_freq`` steps (or when ``evals`` first reaches each of ``eval_at``) and at the end: score the
    model with ``point(model, evals)``, log its result as ``eval/*``, dump (the zoo's learning curve).

    :param point: ``(model, real evaluations) -> {name: value}``; the zoo's appends a point to the curve
    :param eval_freq: callback calls between evaluations (ignored with ``eval_at``)
    :param evals: ``callback -> real evaluations so far`` (default: the step count)
    :param eval_at: real-evaluation counts at which to evaluate (each once, when first reached)
    """

    def __init__(
        self,
        point: Callable[[Any, int], dict[str, float]],
        eval_freq: int,
        evals: Callable[[BaseCallback], int] | None = None,
        eval_at: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.point, self.eval_freq = point, eval_freq
        self.evals = evals or (lambda cb: cb.num_timesteps)
        self.eval_at = sorted(eval_at) if eval_at else None
        self._last: int | None = None

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
