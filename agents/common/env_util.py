"""The one env builder, the one env-introspection helper and the one random-transition loop of every agent.

* `make_env`: an env from an id, a factory or an instance (every agent, the zoo and the front doors build envs here).
* `EnvLayout` / `env_layout`: what an agent needs to know about an `LLMSplitEnv` (splits, action mode, the observation
  layout by *name* from the env's published ``observation_names``, reward weights). Agents save it, so ``predict``
  needs no env; nothing reads an observation dimension by position.
* `collect_transitions`: real steps with uniformly random allowed actions (`SNRThresholdAgent.fit`,
  `RSMPPOAgent.collect`), with the real quality evaluations they cost.
* `lifetime_quality_evals`, `counts_info`, `CountRule` / `count_rule` / `rule_for`: how real evaluations are counted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import numpy as np

import llmsplit_env  # noqa: F401  (registers the env ids)
from llmsplit_env.problem import BASE_OBSERVATION

EnvLike = str | Callable[..., gym.Env] | gym.Env
# What `env_layout` reads of an LLMSplitEnv (its compiled `SplitProblem` publishes the layout).
_REQUIRED = ("problem", "action_masks", "config")


def make_env(env_or_id: EnvLike, env_kwargs: Mapping[str, Any] | None = None) -> gym.Env:
    """An env from an id (``gym.make``), a factory (called with ``**env_kwargs`` if given) or an instance (as is).

    With an id, ``env_kwargs`` holding ``config``, ``render_mode`` or ``problem`` are `gym.make` keyword arguments;
    any other dict is the env's config (``gym.make(id, config=env_kwargs)``); a mix of both is refused. Raises
    ``ValueError`` naming an unknown id.
    """
    if isinstance(env_or_id, gym.Env):
        return env_or_id
    if isinstance(env_or_id, str):
        if env_or_id not in gym.registry:
            known = ", ".join(i for i in gym.registry if i.startswith("LLMSplit"))
            raise ValueError(f"unknown env id {env_or_id!r}; registered LLMSplit ids: {known}")
        kw = dict(env_kwargs or {})
        make_keys = {"config", "render_mode", "problem"} & set(kw)
        if make_keys and set(kw) - make_keys:
            raise ValueError(
                f"env_kwargs mixes gym.make arguments {sorted(make_keys)} with config keys "
                f"{sorted(set(kw) - make_keys)}: put the config keys under 'config'"
            )
        if kw and not make_keys:
            kw = {"config": kw}
        return gym.make(env_or_id, **kw)
    if callable(env_or_id):
        env = env_or_id(**env_kwargs) if env_kwargs else env_or_id()
        if not isinstance(env, gym.Env):
            raise ValueError(f"the env factory returned {type(env).__name__}, not a gymnasium.Env")
        return env
    raise ValueError(f"expected an env id, a factory or a gymnasium.Env, got {type(env_or_id).__name__}")


@dataclass(frozen=True)
class EnvLayout:
    """What an agent knows about an `LLMSplitEnv`: its actions, its observation (by name) and its reward weights.

    Read from the env's public attributes by `env_layout`; JSON-clean (`to_json` / `from_json`) so agents save it.
    """

    num_layers: int
    splits: tuple[int, ...]
    allowed_splits: tuple[int, ...]
    masks: tuple[bool, ...]
    action_mode: str
    max_move: int
    observation_names: tuple[str, ...]
    level_name: str
    backend: str
    reward_weights: tuple[tuple[str, float], ...]

    @property
    def n_actions(self) -> int:
        return len(self.masks)

    @property
    def obs_dim(self) -> int:
        return len(self.observation_names)

    @property
    def weights(self) -> dict[str, float]:
        """Reward weights by component name."""
        return dict(self.reward_weights)

    def index(self, name: str) -> int:
        """Position of the observation dimension ``name``; ``ValueError`` naming the layout if it has none."""
        try:
            return self.observation_names.index(name)
        except ValueError:
            raise ValueError(f"the observation has no {name!r} (it has {list(self.observation_names)})") from None

    def column(self, obs: np.ndarray, name: str) -> np.ndarray:
        """``obs[..., index(name)]`` as float64."""
        return np.asarray(obs, dtype=np.float64)[..., self.index(name)]

    def prev_split(self, obs: np.ndarray) -> np.ndarray:
        """The previous split ``k`` (the observation holds ``k / L``), as integers."""
        return np.rint(self.column(obs, "prev_split") * self.num_layers).astype(np.int64)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["reward_weights"] = dict(self.reward_weights)
        return d

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EnvLayout:
        """Rebuild a saved layout; files from before the layout carried names get the base observation names."""
        names = data.get("observation_names")
        if names is None:
            extra = int(data["obs_dim"]) - len(BASE_OBSERVATION)
            names = [*BASE_OBSERVATION, *(f"extra_{i}" for i in range(extra))]
        return cls(
            num_layers=int(data["num_layers"]),
            splits=tuple(int(k) for k in data["splits"]),
            allowed_splits=tuple(int(k) for k in data["allowed_splits"]),
            masks=tuple(bool(m) for m in data["masks"]),
            action_mode=str(data["action_mode"]),
            max_move=int(data["max_move"]),
            observation_names=tuple(str(n) for n in names),
            level_name=str(data.get("level_name", "level")),
            backend=str(data.get("backend", "profile")),
            reward_weights=tuple((str(c), float(w)) for c, w in dict(data.get("reward_weights", {})).items()),
        )


def env_layout(env: gym.Env) -> EnvLayout:
    """The `EnvLayout` of an `LLMSplitEnv` (or a wrapper of one): what its compiled problem publishes
    (``env.unwrapped.problem.describe()``), its action masks and its backend; ``ValueError`` for any other env."""
    u = env.unwrapped
    for attr in _REQUIRED:
        if not hasattr(u, attr):
            raise ValueError(f"expected an LLMSplitEnv (missing attribute {attr!r} on {type(u).__name__})")
    d = u.problem.describe()
    return EnvLayout(
        num_layers=int(d["num_layers"]),
        splits=tuple(int(k) for k in d["splits"]),
        allowed_splits=tuple(int(k) for k in d["allowed_splits"]),
        masks=tuple(bool(m) for m in u.action_masks()),
        action_mode=str(d["action_mode"]),
        max_move=int(d["max_move"]),
        observation_names=tuple(str(n) for n in d["observation_names"]),
        level_name=str(d["level_name"]),
        backend=str(u.config.get("backend", "profile")),
        reward_weights=tuple((str(c), float(w)) for c, w in d["weights"].items()),
    )


def is_live_config(config: Any) -> bool:
    """Whether an env config runs the live LLM backend (real evaluations then come from the backend's count)."""
    return isinstance(config, Mapping) and config.get("backend") == "llm"


def counts_info(env: gym.Env) -> bool:
    """Whether real evaluations are counted from the backend (live LLM) rather than one per step (profile)."""
    return is_live_config(getattr(env.unwrapped, "config", None))


@dataclass(frozen=True)
class CountRule:
    """How an env's real quality evaluations are counted (`count_rule`).

    ``mode``: ``"info"`` (the live backend's own count), ``"sends"`` (one per step at a split that sends something,
    ``split != local_split``: exactly the steps the live backend would run the model for) or ``"steps"`` (one per
    step). ``local_split``: the split that keeps every layer on the UE (``"sends"`` only).
    """

    mode: str
    local_split: int | None = None

    def cost(self, splits: Sequence[int] | np.ndarray) -> int:
        """The evaluations that steps at ``splits`` cost by this rule (not for ``"info"``: the backend counts)."""
        if self.mode == "sends":
            return int(np.count_nonzero(np.asarray(splits) != self.local_split))
        if self.mode == "steps":
            return len(splits)
        raise ValueError(f"the {self.mode!r} rule counts from the backend, not from the splits")


def count_rule(env: gym.Env) -> CountRule:
    """How ``env``'s real quality evaluations are counted.

    The live backend counts its own (``"info"``). On a profile each step stands for the live model's evaluation at the
    same split, and a step at ``k = L`` sends nothing, so the live model runs none (``"sends"``). An env whose reward
    needs the episode's clean perplexity (the paper terms: the live model measures it at every reset whose split
    sends) is counted by ``"steps"``, which leaves those resets out and charges the steps at ``k = L``.
    """
    u = env.unwrapped
    return rule_for(getattr(u, "config", None), getattr(u, "problem", None))


def rule_for(config: Any, problem: Any) -> CountRule:
    """`count_rule` from an env's config and compiled problem (what a vector env's ``get_attr`` hands over)."""
    if is_live_config(config):
        return CountRule("info")
    if problem is None or problem.needs_ppl0:
        return CountRule("steps")
    return CountRule("sends", int(problem.num_layers))


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


@dataclass(frozen=True)
class Transitions:
    """Real steps: the observation each action was chosen on, the split it selected, the reward and its components."""

    obs: np.ndarray  # [N, D]
    splits: np.ndarray  # [N]
    rewards: np.ndarray  # [N]
    components: Sequence[Mapping[str, float]]  # info["rewards"] of each step
    quality_evals: int  # real evaluations they cost


def collect_transitions(env: gym.Env, num_steps: int, seed: int) -> Transitions:
    """``num_steps`` real steps with uniformly random allowed actions (``numpy`` generator seeded with ``seed``),
    starting from ``env.reset(seed=seed)`` and resetting at episode ends.

    Their cost by `count_rule`: on a profile, the steps whose split sends something (each stands for one evaluation
    of the real model); on the live backend, the evaluations the backend ran (steps at ``k = L`` cost none; resets
    may cost some).
    """
    if isinstance(num_steps, bool) or int(num_steps) != num_steps or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
    u = env.unwrapped
    rng = np.random.default_rng(seed)
    evals_before = lifetime_quality_evals(env)
    obs_list, splits, rewards, comps = [], [], [], []
    obs, _ = env.reset(seed=int(seed))
    for _ in range(int(num_steps)):
        a = int(rng.choice(np.flatnonzero(u.action_masks())))
        next_obs, r, term, trunc, info = env.step(a)
        obs_list.append(obs)
        splits.append(int(info["split"]))
        rewards.append(float(r))
        comps.append(dict(info.get("rewards", {})))
        obs = next_obs
        if term or trunc:
            obs, _ = env.reset()
    live = lifetime_quality_evals(env) - evals_before
    rule = count_rule(env)
    return Transitions(
        obs=np.asarray(obs_list),
        splits=np.asarray(splits),
        rewards=np.asarray(rewards),
        components=comps,
        quality_evals=int(live if rule.mode == "info" else rule.cost(splits)),
    )
