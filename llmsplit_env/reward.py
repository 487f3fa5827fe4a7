"""Reward components: what one transmission did (`Outcome`), a named term of the reward (`RewardComponent`), and
the built-in terms (`BUILTIN_COMPONENTS`). `llmsplit_env.problem.SplitProblem` weighs them by name.

A component sees the problem ``p`` (a `SplitProblem`) and the step's `Outcome` ``o``, whose fields are floats in the
single env and arrays over sub-envs in the vector env; written with operators and ``p.per_split`` it serves both.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from llmsplit_env.config import COMPONENTS


class Outcome(NamedTuple):
    """What one transmission did: floats (single env) or arrays over sub-envs (vector env)."""

    split: Any  # k
    move: Any  # k − k_prev
    level: Any  # the true level the transmission saw (SNR dB or ρ)
    quality: Any  # PPL_clean / PPL (expected rewards: its expectation)
    ppl: Any  # perplexity (expected rewards: E[PPL])
    ppl0: Any  # the paper reward's PPL₀ of the episode (NaN when unused)
    airtime: Any  # seconds on the air, capped (0 at k = L)


#: ``make_outcome((split, move, level, quality, ppl, ppl0, airtime))``: an `Outcome` from the tuple of its fields,
#: with no Python frame (a step builds one: the hot loop)
make_outcome = functools.partial(tuple.__new__, Outcome)


def outcome(split, move, level, quality, ppl, ppl0, airtime) -> Outcome:
    """An `Outcome` from its fields (`make_outcome` of their tuple)."""
    return make_outcome((split, move, level, quality, ppl, ppl0, airtime))


@dataclass(frozen=True)
class RewardComponent:
    """A named, unweighted reward term: ``fn(problem, outcome)``, or a per-split table of the problem looked up at the
    outcome's split (``table``: the name of a `SplitTable` field, e.g. ``"ue_compute"``).

    :param always_reported: report it in ``info["rewards"]`` even at weight 0; otherwise it is reported when it, or
        a component of the same ``group``, is weighted
    :param group: components reported together (the paper's two terms)
    :param needs_ppl0: the component reads ``outcome.ppl0`` (the env measures the paper's PPL₀ at each reset)
    """

    name: str
    fn: Callable[[Any, Outcome], Any] | None = None  # (problem, outcome) -> value
    always_reported: bool = True
    group: str = ""
    table: str | None = None
    needs_ppl0: bool = False  # reads ``outcome.ppl0``: the env then measures PPL₀ at each reset

    def __post_init__(self) -> None:
        if (self.fn is None) == (self.table is None):
            raise ValueError(f"reward component {self.name!r} needs exactly one of fn and table")


def _quality(p: Any, o: Outcome):
    return o.quality


def _latency(p: Any, o: Outcome):
    """``−(compute_s[k] + airtime) / latency_ref_s``. (The array path multiplies by the reciprocal, as the vector env
    always has: its recorded trajectories stay bit-identical; the two differ in the last bit at most.)"""
    k = o[0]
    if type(k) is int:
        return -(p.compute_s[k] + o[6]) / p.latency_ref_s
    out = o[6] + p.compute_s.array.take(k)
    out *= p.neg_inv_latency_ref
    return out


def _switching(p: Any, o: Outcome):
    return -abs(o.move) * p.inv_layers


def _ppl_gain(p: Any, o: Outcome):
    return (o.ppl0 - o.ppl) / o.ppl0


class PredictedGain:
    """The ``ppl_gain`` component's value from a model of it, ``model(level, split)`` (a backend's ``gain_model``,
    e.g. the authors' reward surrogate `llmsplit_env.quality.surrogate.SurrogateMLP`): floats or arrays. A class, not
    a closure, so the problem pickles."""

    def __init__(self, model: Callable[[Any, Any], Any]) -> None:
        self.model = model

    def __call__(self, p: Any, o: Outcome):
        return self.model(o[2], o[0])


def predicted_gain_component(model: Callable[[Any, Any], Any]) -> RewardComponent:
    """The ``ppl_gain`` component computed by ``model(level, split)`` instead of from PPL₀ and PPL (no PPL₀ needed)."""
    return RewardComponent("ppl_gain", PredictedGain(model), always_reported=False, group="paper")


#: the built-in components, in the order they are reported and summed (see the Rewards table of `LLMSplitEnv`)
BUILTIN_COMPONENTS: tuple[RewardComponent, ...] = (
    RewardComponent("quality", _quality),
    RewardComponent("ue_compute", table="ue_compute"),
    RewardComponent("privacy", table="privacy"),
    RewardComponent("switching", _switching),
    RewardComponent("latency", _latency),
    RewardComponent("ppl_gain", _ppl_gain, always_reported=False, group="paper", needs_ppl0=True),
    RewardComponent("paper_load", table="paper_load", always_reported=False, group="paper"),
)
assert tuple(c.name for c in BUILTIN_COMPONENTS) == COMPONENTS
