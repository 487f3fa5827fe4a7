"""The one agent protocol: what every LLMSplit agent offers, on SB3's own surface (SB3 models are agents as they are).

* ``learn(total_timesteps, callback=None, ...) -> self``: train (heuristics: fit their rule, or nothing)
* ``predict(observation, state=None, episode_start=None, deterministic=True) -> (action(s), state)``: act on one
  observation ``[D]`` or a batch ``[N, D]``
* ``save(path)``: write the agent (atomically); ``load(path, env=None)`` (a classmethod): read it back
* ``quality_evals``: the real quality evaluations its training has used

Implemented by `MBRLAgent`, `RSMPPOAgent`, `RLlibPPOAgent`, the heuristics and `OracleAgent` (`agents.baselines`), and
the SB3 models of `agents.sb3` (``quality_evals`` is set on them by `make_sb3_agent` / `load_sb3` and kept by
`RewardComponentCallback`). Two differences of SB3 models, kept so they stay SB3's own classes: their ``predict``
defaults to ``deterministic=False`` (pass ``deterministic=True``, as `evaluate_agent` does), and their ``save`` /
``load`` write and read SB3's zip (pickled parts, not atomic); the zoo saves SB3 models with `agents.sb3.save_sb3` /
`load_sb3` instead (data only, atomic). `Agent` is runtime-checkable (``isinstance(agent, Agent)``
checks the members are there); `protocol_errors` also checks a class's signatures.
"""

from __future__ import annotations

import inspect
import os
from typing import Any, Protocol, runtime_checkable

__all__ = ["Agent", "protocol_errors"]


@runtime_checkable
class Agent(Protocol):
    """An LLMSplit agent (see the module doc)."""

    #: real quality evaluations its training used (0 for rules that need none)
    quality_evals: int

    def learn(self, total_timesteps: int, callback: Any = None, *args: Any, **kwargs: Any) -> Any: ...

    def predict(
        self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True
    ) -> tuple[Any, Any]: ...

    def save(self, path: str | os.PathLike) -> None: ...

    @classmethod
    def load(cls, path: str | os.PathLike, env: Any = None) -> Any: ...


# The parameters each method takes, in order, after self/cls; (name, needs a default).
_SIGNATURES: dict[str, tuple[tuple[str, bool], ...]] = {
    "learn": (("total_timesteps", False), ("callback", True)),
    "predict": (("observation", False), ("state", True), ("episode_start", True), ("deterministic", True)),
    "save": (("path", False),),
    "load": (("path", False), ("env", True)),
}


def protocol_errors(cls: type) -> list[str]:
    """What keeps the class ``cls`` from implementing `Agent` (empty: it does): a missing method, ``load`` not a
    classmethod, or a method whose leading parameters are not the protocol's (names, order, defaults; further
    parameters must have defaults). ``quality_evals`` is an instance attribute: check instances with ``isinstance``."""
    errors = []
    for name, expected in _SIGNATURES.items():
        member = inspect.getattr_static(cls, name, None)
        if member is None:
            errors.append(f"{cls.__name__} has no {name}()")
            continue
        if name == "load" and not isinstance(member, classmethod):
            errors.append(f"{cls.__name__}.load is not a classmethod")
        params = list(inspect.signature(getattr(cls, name)).parameters.values())
        if name != "load":
            params = params[1:]  # self (load is bound to the class already)
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        got = [p.name for p in positional[: len(expected)]]
        if got != [n for n, _ in expected]:
            errors.append(f"{cls.__name__}.{name} takes {got}, expected {[n for n, _ in expected]} first")
            continue
        for p, (_, default) in zip(positional, expected, strict=False):
            if default and p.default is p.empty:
                errors.append(f"{cls.__name__}.{name}: {p.name} needs a default")
        for p in positional[len(expected) :] + [p for p in params if p.kind == p.KEYWORD_ONLY]:
            if p.default is p.empty:
                errors.append(f"{cls.__name__}.{name}: its extra parameter {p.name} needs a default")
    return errors
