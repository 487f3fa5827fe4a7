"""The live quality backend: the real split model evaluated at every step (`LLMQuality`).

Conventions (level, ``k = L``, the clean-perplexity floor, the lost fraction) are those of
`llmsplit_env.quality.backends`, so rewards mean the same thing whichever backend runs. Importing this module does
not import torch; constructing an `LLMQuality` with its own model does (through `SplitRunner`).
"""

from __future__ import annotations

import math
import os

import numpy as np

from llmsplit_env.quality.backends import ProfileQuality, QualityBackend
from llmsplit_env.quality.profile import (
    MODEL_FIELDS,
    PROFILE_FIELDS,
    Profile,
    profile_mismatches,
)


class LLMQuality(QualityBackend):
    """The real split model, live: each step builds the scheme's channel at the step's level, draws the channel seed
    from the env's generator and runs `SplitRunner.evaluate` (cached UE-side prefixes), counting evaluations.

    Profile: it gives the leakage (``leakage="auto"`` or ``"profile"``; otherwise the inversion probe is fitted here
    on the text after the evaluation tokens, ``"auto"`` or ``"probe"``) and the expectations of
    `LLMSplitEnv.expected_rewards`. It is attached only when it matches this backend: ``profile_match="strict"``
    compares every field of `PROFILE_FIELDS` (model, num_layers, scheme, scheme_params such as m / bits /
    threshold_db, text, num_tokens, window), so the expectations are those of the same measurement;
    ``profile_match="model"`` compares model, num_layers, scheme and scheme_params only, and then the profile,
    measured on other text, serves as a *prior* for the expectations and the leakage. A mismatching profile that the
    user configured (``profile_explicit``) raises ``ValueError`` naming each differing field; a mismatching automatic
    default is not attached, and `expectations` raises naming the differing fields.

    ``server="NAME"``: no model here; the evaluations (and the layer count, clean perplexity, probe leakage, channel
    parameters, ``describe``) come from the shared quality server ``NAME`` (`llmsplit_env.quality.server`), whose
    settings must equal this backend's. The seed is drawn and the evaluation counted here, as with the own model, and
    the numbers are the same bit for bit.
    """

    def __init__(
        self,
        model: str | os.PathLike = "smollm2-135m",
        text: str | os.PathLike = "wiki",
        num_tokens: int = 2048,
        window: int = 512,
        dtype: str = "auto",
        device: str = "auto",
        scheme: str = "analog",
        channel_params: dict | None = None,
        profile: Profile | str | os.PathLike | None = None,
        leakage: str = "auto",
        probe_fit_tokens: int = 4096,
        probe_test_tokens: int = 1024,
        cached: bool = True,
        profile_match: str = "strict",
        profile_explicit: bool = True,
        server: str | None = None,
    ) -> None:
        from llmsplit_env.link import check_channel_args  # torch-free

        self.scheme = scheme
        self.level_name = "rho" if scheme == "erasure" else "snr_db"
        self.channel_params = dict(channel_params or {})
        check_channel_args(scheme, 0.1 if scheme == "erasure" else 10.0, **self.channel_params)  # validate early
        self.model_name = str(model)
        self.cached = bool(cached)
        self.server_name = server
        self.server = None
        self.runner = None
        if server is None:
            from llmsplit_env.llm.model_info import check_wheels

            check_wheels(self.model_name, text)  # every missing wheel named at once, with the pip command
            from llmsplit_env.llm import SplitRunner
            from llmsplit_env.llm.channel import make_channel  # torch enters here, not at env import

            self._make_channel = make_channel
            self.runner = SplitRunner.from_pretrained(model, text, num_tokens=num_tokens, window=window, dtype=dtype,
                                                      device=device)  # fmt: skip
            self.num_layers = self.runner.num_layers
            self.hidden_size = self.runner.hidden_size
            self.clean_ppl = float(self.runner.clean_perplexity())
            scheme_params = make_channel(scheme, 0.1 if scheme == "erasure" else 10.0, **self.channel_params).params()
        else:
            # everything but the forward comes from the server: this process loads no model (and no torch)
            self._connect(server, model, text, num_tokens, window, dtype, device, cached)
            from llmsplit_env.quality.client import call

            scheme_params = call(self.server, server, "scheme_params", scheme, self.channel_params)
        self.log_clean = math.log(self.clean_ppl)
        self.evaluations = 0
        self.last_seed: int | None = None
        self.profile_quality: ProfileQuality | None = None
        self.profile_mismatch: list[str] = []  # why the (automatic) profile was not attached
        self.profile_source: str | None = None
        self.profile_match = profile_match
        if profile_match not in ("strict", "model"):
            raise ValueError(f"profile_match must be 'strict' or 'model', got {profile_match!r}")
        if profile is not None:
            pq = ProfileQuality(profile, sample=True)
            wanted = {
                "model": self.model_name,
                "num_layers": self.num_layers,
                "scheme": scheme,
                "scheme_params": dict(scheme_params),
                "text": str(text),
                "num_tokens": int(num_tokens),
                "window": int(window),
            }  # fmt: skip
            bad = profile_mismatches(pq.profile, wanted, PROFILE_FIELDS if profile_match == "strict" else MODEL_FIELDS)
            bad += self._bos_mismatch(pq.profile)
            if bad and profile_explicit:
                raise ValueError(
                    f"config 'profile' {pq.profile.source!r} does not match the live backend "
                    f"(llm.profile_match={profile_match!r}): " + "; ".join(bad)
                    + ("" if profile_match == "model" else
                       "; set llm.profile_match='model' to use a profile of the same model and scheme measured on "
                       "other text as a prior")
                )  # fmt: skip
            if bad:
                self.profile_mismatch = bad
                self.profile_source = pq.profile.source
            else:
                self.profile_quality = pq
        if leakage not in ("auto", "profile", "probe"):
            raise ValueError(f"leakage must be 'auto', 'profile' or 'probe', got {leakage!r}")
        if leakage == "profile" and self.profile_quality is None:
            raise ValueError(
                f"leakage='profile' needs a {scheme} profile of model {self.model_name!r} (config key 'profile')"
                + (f" (the default one differs: {'; '.join(self.profile_mismatch)})" if self.profile_mismatch else "")
                + "; use leakage='probe' to fit the inversion probe on this model"
            )
        if self.profile_quality is not None and leakage != "probe":
            self.leakage = list(self.profile_quality.leakage)
            self.leakage_source = f"profile {self.profile_quality.profile.source}"
        else:
            self.leakage = self._probe_leakage(probe_fit_tokens, probe_test_tokens)
            self.leakage_source = "probe"

    def _connect(self, server: str, model, text, num_tokens: int, window: int, dtype: str, device: str,
                 cached: bool) -> None:  # fmt: skip
        """Attach to the quality server ``server``; the env's ``llm`` settings must be the ones it measures with."""
        from llmsplit_env.quality.client import connect

        if not cached:
            raise ValueError(
                f"config 'llm.server' = {server!r} evaluates from cached prefixes; llm.cached False needs the model "
                "in this process (set llm.server None)"
            )
        self.server, info = connect(server)
        got = info["describe"]
        spec = info["spec"]
        alias = {"fp32": "float32", "bf16": "bfloat16"}
        differ = [
            f"llm.{key} {mine!r} (server: {theirs!r})"
            for key, mine, theirs in (
                ("model", str(model), spec["model"]),
                ("text", str(text), spec["text"]),
                ("num_tokens", int(num_tokens), spec["num_tokens"]),
                ("window", int(window), spec["window"]),
            )
            if mine != theirs
        ]
        if dtype != "auto" and alias.get(dtype, dtype) != got["dtype"]:
            differ.append(f"llm.dtype {dtype!r} (server: {got['dtype']!r})")
        if device != "auto" and str(device).split(":")[0] != got["device"].split(":")[0]:
            differ.append(f"llm.device {device!r} (server: {got['device']!r})")
        if differ:
            raise ValueError(
                f"config 'llm.server' = {server!r} measures something else than this env's llm settings: "
                + "; ".join(differ)
                + "; set those keys to the server's, or start a server with this env's settings"
            )
        self.server_info = info
        self.num_layers = int(info["num_layers"])
        self.hidden_size = int(info["hidden_size"])
        self.clean_ppl = float(info["clean_ppl"])

    def _bos_mismatch(self, profile: Profile) -> list[str]:
        """A profile measured with other BOS tokens at the start of its windows than this backend's (one made before
        windows got the tokenizer's BOS records none: it matches only a model whose tokenizer adds none)."""
        describe = self.runner.describe() if self.runner is not None else self.server_info["describe"]
        mine = list(describe.get("bos_ids", []))
        theirs = profile.metadata.get("bos_ids") if isinstance(profile.metadata, dict) else None
        if (theirs if theirs is not None else []) == mine:
            return []
        if theirs is None:
            return [f"bos_ids: the profile records none (made before windows started with the tokenizer's BOS), this "
                    f"model's tokenizer adds {mine}; rebuild the profile with its metadata.command"]  # fmt: skip
        return [f"bos_ids: profile {theirs!r}, this backend {mine!r}"]

    def _probe_leakage(self, fit_tokens: int, test_tokens: int) -> list[float]:
        if self.server is not None:
            from llmsplit_env.quality.client import call

            return list(call(self.server, self.server_name, "probe_leakage", fit_tokens, test_tokens))
        from llmsplit_env.llm.probe import probe_leakage

        return probe_leakage(self.runner, fit_tokens, test_tokens)

    def sample(self, split: int, level: float, z: float, rng: np.random.Generator) -> tuple[float, float]:
        if split == self.num_layers:
            return self.log_clean, 0.0
        request = self._request(split, level, rng)
        if self.server is not None:
            from llmsplit_env.quality.client import call

            x, lost = call(self.server, self.server_name, "evaluate", *request)
        else:
            x, lost = self._evaluate_here(*request)
        self.evaluations += 1
        return (x if x > self.log_clean else self.log_clean), lost

    def sample_many(self, splits, levels, rngs) -> tuple[np.ndarray, np.ndarray]:
        """`sample` for several transmissions at once (the edge cell's UEs in one slot): ``(log PPL, lost fraction)``
        arrays. Each channel seed is drawn from its own generator ``rngs[i]`` as `sample` draws it, so the numbers are
        those of `sample` called in order; with ``server`` the requests go out together and the server batches those
        of the same split (its batches give the bits of single forwards), with the model here they run one by one."""
        n = len(splits)
        log_ppl, lost = np.full(n, self.log_clean), np.zeros(n)
        todo = [i for i in range(n) if int(splits[i]) != self.num_layers]
        requests = [self._request(int(splits[i]), float(levels[i]), rngs[i]) for i in todo]
        if self.server is not None and requests:
            from llmsplit_env.quality.client import call_many

            answers = call_many(self.server, self.server_name, "evaluate", requests)
        else:
            answers = [self._evaluate_here(*r) for r in requests]
        for i, (x, loss) in zip(todo, answers, strict=True):
            log_ppl[i], lost[i] = (x if x > self.log_clean else self.log_clean), loss
        self.evaluations += len(todo)
        return log_ppl, lost

    def _request(self, split: int, level: float, rng: np.random.Generator) -> tuple:
        """The arguments of one evaluation (the server's ``evaluate``): the channel seed drawn from ``rng``, the level
        clipped to the channel's accepted range."""
        seed = int(rng.integers(2**31 - 1))
        self.last_seed = seed  # the channel realisation of the last evaluation (for reproduction outside the env)
        if self.level_name == "rho":
            level = min(max(level, 0.0), 1.0)
        else:
            level = min(max(level, -50.0), 100.0)  # the channel's accepted range
        return split, self.scheme, level, self.channel_params, seed

    def _evaluate_here(self, split: int, scheme: str, level: float, params: dict, seed: int) -> tuple[float, float]:
        ev = self.runner.evaluate(split, self._make_channel(scheme, level, **params), seeds=[seed], cached=self.cached)
        return float(ev.log_ppl[0]), float(ev.loss_fraction[0])

    def _need_profile(self) -> ProfileQuality:
        if self.profile_quality is None:
            why = (
                f"the default profile {self.profile_source!r} differs ({'; '.join(self.profile_mismatch)})"
                if self.profile_mismatch
                else "none is configured"
            )
            raise ValueError(
                f"expected rewards of the live backend come from a {self.scheme} profile of the same model "
                f"({self.model_name!r}) and measurement (llm.profile_match={self.profile_match!r}); {why}. Build one "
                f"with `llmsplit profile --model {self.model_name} --scheme {self.scheme} "
                "--out FILE` "
                "and pass config profile=FILE"
                + ("" if self.profile_match == "model" else ", or set llm.profile_match='model' to use a profile of "
                   "the same model and scheme measured on other text as a prior")
            )  # fmt: skip
        return self.profile_quality

    def expectations(self, split: int, level: float) -> tuple[float, float]:
        return self._need_profile().expectations(split, level)

    def baseline_ppl(self, split: int, level: float, rng: np.random.Generator) -> float:
        return math.exp(self.sample(split, level, 0.0, rng)[0])  # one real evaluation (counted)

    def describe(self) -> dict:
        return {
            "class": type(self).__name__,
            **(self.runner.describe() if self.server is None else self.server_info["describe"]),
            "server": self.server_name,
            "scheme": self.scheme,
            "channel_params": self.channel_params,
            "leakage": self.leakage_source,
            "profile": None if self.profile_quality is None else self.profile_quality.profile.source,
            "profile_match": self.profile_match,
        }
