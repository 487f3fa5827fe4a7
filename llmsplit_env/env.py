"""`LLMSplitEnv`: choose where to split an LLM between a phone (UE) and an edge server, step by step, over a link
whose quality drifts.

## Description

An L-layer decoder LLM runs its embedding and layers ``1..k`` on the UE and sends the hidden states ``H_k`` over a
noisy uplink; the edge runs layers ``k+1..L``. Each step the agent sees an estimate of the link's mean quality and
picks the split ``k``; the step's transmission (within-step fading, noise, losses) is scored by a quality backend
(a measured profile of SmolLM2-135M, or the live model), and the reward trades answer quality against the UE's load,
privacy (how well an eavesdropper inverts ``H_k``) and the cost of moving layers. Between steps the channel moves on
(`llmsplit_env.dynamics`). Data flow of a step: channel → observation → action → quality backend → reward
components → reward.

## Action Space

``Discrete(n)``.

* ``action_mode="absolute"`` (default): action ``a`` selects split ``k = k_min + a``, ``n = k_max − k_min + 1``
  (default ``k = a + 1``, ``n = L``). Splits excluded by config (``splits.excluded``, ``splits.ue_max_layers``) are
  ``False`` in `action_masks()`; taking one raises ``ValueError``.
* ``action_mode="relative"``: the paper's layout of ``2·max_move + 1`` moves: 0 stay; ``2i−1`` = −i; ``2i`` = +i
  (``i = 1..max_move``; default 9 actions). A move past an end, or onto an excluded split, is cut back to the largest
  legal move in its direction (the authors' rule), so every relative action is valid (masks all ``True``).

## Observation Space

``Box(float32)`` with finite bounds; values are clipped to them. Base dimensions:

| idx | name          | SNR schemes (analog, digital)        | erasure scheme                      |
|-----|---------------|--------------------------------------|-------------------------------------|
| 0   | `level`       | estimated mean SNR, dB, [−20, 50]    | estimated ρ, [0, 1]                  |
| 1   | `trend`       | EWMA of its change per step, [−10, 10] dB | same, [−0.1, 0.1]              |
| 2   | `packet_loss` | realised lost fraction of the last transmission, [0, 1] (0 after reset and at k = L) |
| 3   | `prev_split`  | previous split / L, [0, 1] (the split a zero move keeps)                   |

Extras (``observation.extras``, appended in the order given):

| name           | meaning                                                               | bounds       |
|----------------|-----------------------------------------------------------------------|--------------|
| `distance`     | UE–site distance / cell radius (mobility channel only)                | [0, 1]       |
| `speed`        | UE speed, m/s (mobility channel only)                                 | [0, 3·v̄]     |
| `time`         | steps taken / max_episode_steps                                        | [0, 1]       |
| `log_ppl0`     | log of the paper reward's PPL₀ (makes the paper reward Markov)         | [0, 25]      |
| `last_quality` | last step's quality component                                          | [0, 1]       |

The estimate carries the CSI error (``channel.csi_error``, dB; 1 dB by default); the trend is
``τ ← β τ + (1−β)(ŝ_t − ŝ_{t−1})`` with ``β = observation.trend_smoothing``. ``packet_loss`` is what the last
transmission actually lost (packets = token vectors for analog/digital, elements for erasure), not its mean: the live
backend reports its transmission's count; the profile backend, which knows only the mean fraction ``p`` at the true
level, draws ``Binomial(n, p)/n`` (rounded normal approximation, `llmsplit_env.quality.backends.realised_loss`) over
the measured transmission's ``n`` units (the profile's ``num_tokens`` packets, 2048; erasure: ``num_tokens · d``
elements) from the env's stream. It is informative about the level (as a real receiver's loss count is), but it is
not the level itself. (``info["packet_loss"]`` is the same realised value.)

## Rewards

``reward = Σ_c w_c · r_c`` over the components in ``info["rewards"]`` (unweighted values; weights in
``config["reward"]["weights"]`` and `reward_weights`):

| component    | value                                                             | default weight |
|--------------|-------------------------------------------------------------------|----------------|
| `quality`    | PPL_clean / PPL ∈ (0, 1] of this step's transmission              | 1.0            |
| `ue_compute` | 1 − k/L (the layers the UE does not run)                          | 0.6            |
| `privacy`    | 1 − leakage(k) (leakage: inversion-probe accuracy on H_k)         | 0.1            |
| `switching`  | −|k − k_prev| / L (weight reloading, state migration)             | 0.1            |
| `latency`    | −(UE compute + min(airtime, max_airtime_s) + edge) / (L·ue_layer_s) | 0.0          |
| `ppl_gain`   | (PPL₀ − PPL) / PPL₀ (paper; reported when a paper weight ≠ 0)     | 0.0            |
| `paper_load` | (k_max − k) / k_max (paper's load term; reported likewise)        | 0.0            |

At ``k = L`` nothing is transmitted: quality 1, leakage 0, no airtime. Latency: UE ``k·ue_layer_s``, edge
``(L−k)·edge_layer_s``, airtime ``payload_bits(num_tokens, d, bits) / (B·log2(1 + γ̄))`` at the true mean SNR
(erasure: at ``latency.nominal_snr_db``), capped at ``latency.max_airtime_s`` (default ``None``: 4 × the UE's full
compute time ``L·ue_layer_s``, reached below about −10 dB with the defaults; without the cap the component reaches
about −200 at the cell edge). Every scheme is charged the payload of ``H_k`` quantised to ``latency.bits`` bits per
element plus a 32-bit scale per token (``payload_bits``); for the analog scheme, which sends unquantised symbols, this
is the digital-equivalent payload of the same information. So the component lies in
``[−(max_k compute(k) + max_airtime_s)/(L·ue_layer_s), 0)``: within ``[−5, −0.13]`` with the default latency
section.

Why these weights (``benchmarks/calibrate_rewards.py``, figures in ``benchmarks/RESULTS.md``): quality is the
service; running all L layers on the phone costs 0.6 of a perfect answer, so offloading pays while the link keeps the
quality above about 0.45 (roughly 8 dB for k = 1); privacy gets 0.1 because the measured inversion probe recovers
44–99 % of the tokens at every k < L, so partial splits buy little and only k = L protects (at 0.2, keeping
everything local already earns 91 % of a myopic oracle's return; at ue_compute 0.4, privacy 0.3 it earns 100 %); moving
all layers at once costs 0.1. On the default channel the oracle then alternates between k = 1 and k = L and the best
fixed split earns about 88 % of its return. The measured profile does not allow more: on SmolLM2-135M, k = 1 is both
the cheapest split and (within a few %) the most robust to noise, so with these linear components the per-step
optimum is k = 1 or k = L; intermediate splits appear only through large switching costs or a privacy weight close
to the compute weight, and then a fixed split earns at least 95 % of a myopic oracle's return (the scan in
RESULTS.md).

## Starting State

The channel's reset (`llmsplit_env.dynamics`; default: a UE uniform in a 200 m cell); the previous split is drawn
uniformly from ``initial_split`` (default ``"random"``: all allowed splits). ``reset(options={"initial_split": k})``
fixes it for one episode.

## Episode End

No termination. Truncation after ``max_episode_steps`` steps (50 by default; the env truncates itself, the
registrations add no `TimeLimit`).

## Info

``rewards`` (components), ``ppl``, ``split``, ``snr_db`` (or ``rho`` for the erasure scheme: the true level the
step's transmission saw), ``packet_loss``, ``outside_grid`` (``True`` when that level lay outside the profile's measured
grid and the step was scored at the grid's nearer end; always ``False`` for the live backend; building an env whose
channel does this on more than 5 % of steps, at an end where the profile's quality has not settled, warns once:
`llmsplit_env.factory.grid_coverage`), ``quality_evals`` (real LLM evaluations this env has run since it was
last seeded, i.e. over the whole run when seeded once; counting from the last ``reset(seed=...)`` keeps infos
identical for identical seeds, which Gymnasium's checker requires; the lifetime total is `total_quality_evals`;
always 0 for the profile backend); ``ppl0`` when the paper terms are in use. (The reward surrogate's env has no
``ppl``: it predicts no perplexity.) `reset` returns the true level, the
initial split and ``quality_evals``.

## Arguments

``LLMSplitEnv(config=None, render_mode=None, preset=None, *, problem=None, **config_keys)``; ``config`` is
deep-merged into ``default_config(preset)``; it may also name ``"preset"`` itself. Top-level keys may also be given as
keyword arguments (``gym.make(id, reward={...})``, as Gymnasium's and RLlib's ``env_config`` pass them: see
`llmsplit_env.rllib` for RLlib's two ways of making the env), merged with ``config`` (a value set differently in both
raises ``ValueError`` naming it). Unknown keys, at any depth, and bad values raise ``ValueError`` naming the key and
what is allowed. ``problem``: a compiled `llmsplit_env.problem.SplitProblem` instead of a config (e.g. one with an
added reward component; also through ``gym.make(id, problem=...)`` when it was compiled with that id's preset).
Top-level keys (see `default_config()` for every nested default):

| key                 | default                 | meaning                                                      |
|---------------------|-------------------------|--------------------------------------------------------------|
| `backend`           | `"profile"`             | `"profile"` (shipped measurements) or `"llm"` (live model)   |
|                     |                         | (`"surrogate"`: set by `surrogate`, see Presets)             |
| `surrogate`         | `None`                  | path of the authors' `reward_predictor.pth` (preset `paper`) |
| `scheme`            | `"analog"`              | `"analog"`, `"digital"` or `"erasure"`; with a `profile` and |
|                     |                         | no `scheme` (nor a preset's): the profile's                  |
| `profile`           | `None`                  | name or path; `None`: `smollm2-135m-<scheme>`                |
| `sample_quality`    | `True`                  | profile: sample log-PPL ~ N(mean, std); `False`: the mean    |
| `llm`               | SmolLM2, wiki, 2048 tok | live model: `model`, `text`, `num_tokens`, `window`, ...      |
|                     |                         | and `profile_match` (see Presets)                            |
| `llm.server`        | `None`                  | `None`: load the model in this env's process; a name: use   |
|                     |                         | the shared quality server of that name (see below)           |
| `splits`            | 1..L, none excluded     | `min`, `max`, `excluded`, `ue_max_layers`                    |
| `initial_split`     | `"random"`              | `"random"`, a split, or a list to draw from                  |
| `action_mode`       | `"absolute"`            | or `"relative"` (with `max_move`, default 4)                 |
| `max_episode_steps` | 50                      | truncation                                                   |
| `channel`           | mobility, 3GPP UMi      | `model`, `csi_error`, `nakagami_m`, a section per model       |
| `observation`       | no extras               | `extras`, `trend_smoothing` (0.5)                            |
| `reward`            | see Rewards             | `weights` of the components                                  |
| `latency`           | 4 / 0.4 ms per layer    | UE and edge time per layer, bandwidth, tokens, bits, `max_airtime_s` |

## Sharing the live model

``llm.server`` (live backend): ``None`` (default) loads the model in every env's process; ``"NAME"`` sends the
env's evaluations to the Ray actor ``NAME`` (`llmsplit_env.quality.server`: one per device, started once with
``start_quality_server(NAME, ...)`` or ``llmsplit server start --name NAME``), which holds
one model for any number of envs (same process, RLlib env runners, other machines) and batches their concurrent
requests. Ray must be initialised in the env's process (RLlib's workers are); the env's other ``llm`` settings
must be the server's (``ValueError`` naming each differing key), ``llm.cached`` must stay True. Rewards, infos and
``quality_evals`` are the same, bit for bit, as with the model in the process: the server serves one request per
forward unless batching was checked to be batch-invariant at its start (or its owner started it with
``batching="trusted"``, accepting last-bit differences).

## Presets

* ``default`` (`LLMSplit-v0`): profile backend on SmolLM2-135M's analog profile, mobility channel, 50 steps.
* ``llm`` (`LLMSplit-LLM-v0`): the same with the live model (``llm.*`` picks it). ``expected_rewards`` and the
  leakage come from a profile of the same measurement: with ``llm.profile_match="strict"`` (default) its model,
  num_layers, scheme, scheme_params (m, bits, threshold_db), text, num_tokens and window must equal the live
  backend's; ``"model"`` checks only model, num_layers, scheme and scheme_params, and uses a profile measured on other
  text as a prior. A configured ``profile`` that does not match raises ``ValueError`` naming each field; the automatic
  default ``smollm2-135m-<scheme>`` is then just not used, and ``expected_rewards`` raises naming the fields.
* ``paper`` (`LLMSplit-Paper-v0`): the authors' surrogate env on SmolLM2's erasure profile: ρ ~ U(0.01, 0.3) at
  reset with their action-coupled drift (`PaperErasureDrift`), splits 1..10, initial split ~ U{1..9}, 5-step
  episodes, reward ``10·(PPL₀ − PPL)/PPL₀ + (10 − p)/10`` (weights 10 and 1 on ``ppl_gain`` and ``paper_load``),
  deterministic quality (their surrogate predicts a point value; ``sample_quality`` False), absolute actions
  (``action_mode="relative"`` gives their 9 moves). PPL₀ is the median perplexity at the episode's first state,
  so the reward depends on where the episode started: it is not Markov in (ρ, p). The preset observes ``log PPL₀``
  (extra ``log_ppl0``) to restore the Markov property and reports ``ppl0`` in ``info``; set
  ``observation.extras=[]`` for the authors' bare (ρ, p) state.
* ``paper`` with ``surrogate=PATH`` (``gym.make("LLMSplit-Paper-v0", surrogate="reward_predictor.pth")``): the
  authors' surrogate env exactly, on their released reward surrogate (`llmsplit_env.quality.surrogate`; the file is
  not shipped: it carries no license). Setting the path applies, beneath the user's own keys (which still win):
  ``backend="surrogate"``; reward ``10·f(ρ', p') + (10 − p')/10`` from the step's new state, ``f`` their MLP
  (2→128→128→1, float32, on the raw (ρ, p)) as the ``ppl_gain`` component; their 9 relative moves
  (``action_mode="relative"``, ``max_move=4``, cut back at the ends); their drift factors
  ``channel.paper_drift.factors`` (`llmsplit_env.dynamics.AUTHORS_DRIFT_FACTORS`: 1 ∓ 0.0005·|move|, but 0.9995 for
  +3, as their code has) on a ρ stored as float32 (``channel.paper_drift.float32``); no ``log_ppl0`` extra (the
  reward is Markov in (ρ, p)). The rest is the ``paper`` preset's: ρ ~ U(0.01, 0.3), p ~ U{1..9}, 5 steps. The
  surrogate knows no perplexity, quality or leakage: ``info`` has no ``ppl`` and ``info["rewards"]`` no ``quality``
  or ``privacy``; nonzero ``quality`` or ``privacy`` weights, the ``log_ppl0`` and ``last_quality`` extras, splits
  above 10 and another ``backend``, ``scheme`` or ``profile`` raise ``ValueError`` naming the key. ``packet_loss``
  is ρ' itself (the erasure channel's expected lost fraction: nothing is transmitted). The model facts are their
  Llama-2-7B's (32 layers, hidden size 4096: ``ue_compute`` and ``latency`` may be weighted). ``expected_rewards()``
  is exact (the surrogate is deterministic), so `OracleAgent` applies; the vector env steps it too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.registration import EnvSpec

from llmsplit_env.config import COMPONENTS, OBS_EXTRAS, PRESETS, default_config, resolve_config
from llmsplit_env.dynamics import NOISE_COLUMNS, ChannelDynamics
from llmsplit_env.episode import (
    NORMAL_CHUNK,
    Episode,
    NotResetError,
    end_step,
    env_config,
    env_problem,
    initial_split,
    next_position,
)
from llmsplit_env.factory import make_backend, make_dynamics
from llmsplit_env.observation import Observer
from llmsplit_env.problem import SplitProblem
from llmsplit_env.quality.backends import QualityBackend, realised_loss
from llmsplit_env.registration import with_episode_length
from llmsplit_env.reward import make_outcome

__all__ = ["COMPONENTS", "NORMAL_CHUNK", "OBS_EXTRAS", "PRESETS", "LLMSplitEnv"]


class LLMSplitEnv(gym.Env):
    __doc__ = __doc__

    metadata: ClassVar[dict] = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}
    _spec: EnvSpec | None = None

    # --- configuration --------------------------------------------------------------------------------------------

    @classmethod
    def default_config(cls, preset: str = "default") -> dict:
        """The full default configuration of ``preset`` (a fresh copy; edit freely)."""
        return default_config(preset)

    @classmethod
    def resolve_config(cls, config: Mapping | None = None, preset: str | None = None) -> dict:
        """``default_config(preset)`` deep-merged with ``config``, validated (``ValueError`` names what is wrong)."""
        return resolve_config(config, preset)

    def __init__(
        self,
        config: Mapping | None = None,
        render_mode: str | None = None,
        preset: str | None = None,
        *,
        problem: SplitProblem | None = None,
        **config_kwargs: Any,
    ):
        super().__init__()
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.render_mode = render_mode
        self.config = cfg = env_config(config, preset, problem, config_kwargs)
        self.quality_backend: QualityBackend = make_backend(cfg)
        self.problem = problem = env_problem(cfg, self.quality_backend, problem)
        # The problem's facts that users and agents read off an env (copies: the problem itself is immutable).
        self.num_layers, self.level_name = problem.num_layers, problem.level_name
        self.k_min, self.k_max, self.max_episode_steps = problem.k_min, problem.k_max, problem.max_episode_steps
        self.splits, self.allowed_splits = list(problem.splits), list(problem.allowed_splits)
        self.reward_weights, self.observation_names = dict(problem.weights), list(problem.observation_names)
        self.payload_bits, self.max_airtime_s = problem.payload_bits, problem.max_airtime_s
        self.dynamics: ChannelDynamics = make_dynamics(cfg, self.quality_backend)
        self.action_space = spaces.Discrete(problem.n_actions)
        self.observation_space = spaces.Box(
            np.array(problem.obs_low, np.float32), np.array(problem.obs_high, np.float32), dtype=np.float32
        )

        self._observer = Observer(problem, self.dynamics)
        self._coupled = True  # set at each reset from the dynamics then in place

        # Episode state (set by reset; t = -1 until the first reset).
        self._ep = Episode(problem.initial_splits[0], t=-1)
        self._zbuf: list[float] = []
        self._zp = NORMAL_CHUNK
        self._evals_at_seed = 0
        self._history: list[tuple[float, float, int, float]] = []
        self._last_info: dict = {}

    # --- properties -----------------------------------------------------------------------------------------------

    @property
    def spec(self) -> EnvSpec | None:
        """The spec `gym.make` gave this env, with ``max_episode_steps`` its true episode length (the env truncates
        itself, so no `TimeLimit` is registered; wrappers such as sb3-contrib's ``TimeFeatureWrapper`` read this)."""
        return with_episode_length(self._spec, self.max_episode_steps)

    @spec.setter
    def spec(self, value: EnvSpec | None) -> None:
        self._spec = value

    @property
    def prev_split(self) -> int:
        """The split in force: the one a zero move keeps (the previous step's, or the episode's initial split)."""
        return self._ep.prev_split

    @property
    def level(self) -> float:
        """The link's true mean level now (SNR dB, or ρ)."""
        return self.dynamics.level

    @property
    def quality_evals(self) -> int:
        """Real LLM evaluations since the env was last seeded (what ``info["quality_evals"]`` reports)."""
        return self.quality_backend.evaluations - self._evals_at_seed

    @property
    def total_quality_evals(self) -> int:
        """Real LLM evaluations over the env's lifetime."""
        return self.quality_backend.evaluations

    @property
    def elapsed_steps(self) -> int:
        """Steps taken in the current episode (0 before the first reset)."""
        return max(self._ep.t, 0)

    @property
    def ppl0(self) -> float:
        """The paper reward's PPL₀ of this episode (NaN unless the paper terms or ``log_ppl0`` are in use)."""
        return self._ep.ppl0

    def action_to_split(self, action: int) -> int:
        """The split ``action`` selects now (relative mode: from the current previous split)."""
        a = int(action)
        if not 0 <= a < self.problem.n_actions:
            raise ValueError(self._range_error(action))
        return self.problem.split_of(a, self.prev_split)

    def action_masks(self) -> np.ndarray:
        """Bool ``[n]``: ``True`` for actions that select an allowed split (sb3-contrib's MaskablePPO reads this)."""
        return self.problem.masks.copy()

    # --- gym API --------------------------------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        forced = options.pop("initial_split", None)
        if options:
            raise ValueError(f"unknown reset options {sorted(options)}; allowed: initial_split")
        if forced is not None and (
            isinstance(forced, bool) or not isinstance(forced, (int, np.integer)) or not self.problem.is_allowed(forced)
        ):
            raise ValueError(f"reset option initial_split must be an allowed split, got {forced!r}")
        if seed is not None:  # a new generator: forget the normals drawn from the old one
            self._zbuf, self._zp = [], NORMAL_CHUNK
            self._evals_at_seed = self.quality_backend.evaluations
        # whether the split moves the link (`ChannelDynamics.on_action`): the exogenous channels skip the call
        self._coupled = type(self.dynamics).on_action is not ChannelDynamics.on_action
        # normals for the channel's reset, then a pair for the initial split (see `_normals`)
        nd = self.dynamics.reset_normals
        head = self._normals(nd + 2)
        self.dynamics.reset(head[:nd])
        k0 = initial_split(self.problem, head[nd], head[nd + 1]) if forced is None else int(forced)
        self._ep = ep = Episode(k0)
        info = {self.level_name: self.dynamics.level, "split": k0, "quality_evals": self.quality_evals}
        if self.problem.needs_ppl0:
            ep.ppl0 = self.quality_backend.baseline_ppl(k0, self.dynamics.level, self.np_random)
            info["quality_evals"] = self.quality_evals
            info["ppl0"] = ep.ppl0
        if self.render_mode is not None:
            self._history = [(self.dynamics.level, self.dynamics.estimate, k0, 0.0)]
        self._last_info = info
        return self._observer.observe(ep, self.dynamics), info

    def step(self, action):
        problem, dyn, qb, ep = self.problem, self.dynamics, self.quality_backend, self._ep
        if ep.t < 0:
            raise NotResetError("step() before reset(): call env.reset(seed=...) first")
        # what `Discrete.contains` accepts: an int, a numpy integer or a 0-d integer array (not a bool, not a float)
        if type(action) is int:
            a = action
        elif isinstance(action, bool) or not (
            isinstance(action, np.integer)
            or (isinstance(action, np.ndarray) and action.shape == () and action.dtype.kind in "iu")
        ):
            raise ValueError(self._range_error(action))
        else:
            a = int(action)
        if not 0 <= a < problem.n_actions:
            raise ValueError(self._range_error(action))
        kp = ep.prev_split
        k = problem.targets[kp][a] if problem.relative else problem.k_min + a  # `problem.split_of`, inlined
        if not problem.allowed[k]:
            sp = self.config["splits"]
            raise ValueError(
                f"action {a} selects split {k}, which the config excludes (splits.excluded={sp['excluded']}, "
                f"ue_max_layers={sp['ue_max_layers']}); check action_masks()"
            )
        move = k - kp
        if self._coupled:
            dyn.on_action(move)
        level = dyn.level
        p, refill = next_position(self._zp, NOISE_COLUMNS)  # `_normals(NOISE_COLUMNS)`, inlined: the hot loop
        if refill:
            self._zbuf = self.np_random.standard_normal(NORMAL_CHUNK).tolist()
        self._zp = p + NOISE_COLUMNS
        z = self._zbuf[p : p + NOISE_COLUMNS]

        # quality backend -> reward components -> reward
        log_ppl, loss = qb.sample(k, level, z[4], self.np_random if qb.uses_env_rng else None)
        if qb.loss_units:  # the profile's mean lost fraction -> this transmission's
            loss = realised_loss(loss, z[5], qb.loss_units)
        ppl = math.exp(log_ppl)
        quality = qb.clean_ppl / ppl
        o = make_outcome((k, move, level, quality, ppl, ep.ppl0, problem.airtime(k, level)))
        rewards, reward = problem.score(o)
        info = {
            "rewards": rewards,
            "ppl": ppl,
            "split": k,
            problem.level_name: level,
            "packet_loss": loss,
            "outside_grid": not qb.level_lo <= level <= qb.level_hi,
            "quality_evals": qb.evaluations - self._evals_at_seed,
        }
        if problem.needs_ppl0:
            info["ppl0"] = ep.ppl0
        if not qb.knows_ppl:  # the reward surrogate: no perplexity to report
            del info["ppl"]

        # the channel moves on; the episode's bookkeeping; the next observation
        est_prev = dyn.estimate
        dyn.advance(z)
        truncated = end_step(problem, ep, k, loss, quality, est_prev, dyn.estimate)
        if self.render_mode is not None:
            self._history.append((dyn.level, dyn.estimate, k, reward))
        self._last_info = info
        return self._observer.observe(ep, dyn), reward, False, truncated, info

    def _normals(self, n: int) -> list[float]:
        """The next ``n`` standard normals of this env's stream (the rule: `llmsplit_env.episode.next_position`)."""
        p, refill = next_position(self._zp, n)
        if refill:
            self._zbuf = self.np_random.standard_normal(NORMAL_CHUNK).tolist()
        self._zp = p + n
        return self._zbuf[p : p + n]

    # --- expectations (oracle) ------------------------------------------------------------------------------------

    def expected_rewards(self) -> np.ndarray:
        """Expected reward of every action at the current true state (``-inf`` for masked actions).

        Exact for the profile backend (same interpolation and floored lognormal as the sampling; see
        `llmsplit_env.quality.backends`). The live backend takes the expectation from its profile, which must match
        it (``llm.profile_match``: ``"strict"``, the same measurement; ``"model"``, the same model and scheme, the
        profile then being a prior measured on other text), else raises ``ValueError`` naming the differing fields.
        """
        if self._ep.t < 0:
            raise NotResetError("expected_rewards() before reset(): call env.reset(seed=...) first")
        return self.problem.expected_rewards(
            self._ep.prev_split, self.dynamics.level_after, self.quality_backend.expectations, self._ep.ppl0
        )

    # --- rendering ------------------------------------------------------------------------------------------------

    def render(self):
        if self._ep.t < 0:
            raise NotResetError("render() before reset(): call env.reset(seed=...) first")
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='ansi' or 'rgb_array'")
            return None
        if self.render_mode == "ansi":
            return self._render_ansi()
        return self._render_rgb()

    def _render_ansi(self) -> str:
        info = self._last_info
        unit = "dB" if self.problem.level_is_snr else ""
        name = "SNR" if self.problem.level_is_snr else "rho"
        line = (
            f"t={self.elapsed_steps:3d}/{self.max_episode_steps} {name}={self.dynamics.level:7.3f}{unit} "
            f"(est {self.dynamics.estimate:7.3f}) split={self.prev_split:2d}/{self.num_layers}"
        )
        if "rewards" in info:
            ppl = f" ppl={info['ppl']:9.2f}" if "ppl" in info else ""
            line += f"{ppl} reward={self._history[-1][3]:7.3f}" + "".join(
                f" {c}={v:.3f}" for c, v in info["rewards"].items()
            )
        return line + "\n"

    def _render_rgb(self, height: int = 160, width: int = 240) -> np.ndarray:
        """Two panels over the episode: the true level (blue) and its estimate (grey) on top, the split below."""
        img = np.full((height, width, 3), 255, dtype=np.uint8)
        half = height // 2
        img[half - 1 : half + 1] = 200  # separator
        h = self._history
        T = max(self.max_episode_steps, 1)
        lo, hi = self.problem.obs_low[0], self.problem.obs_high[0]
        xs = [min(int(i * (width - 1) / T), width - 1) for i in range(len(h))]

        def row(v: float, top: int, bottom: int, vlo: float, vhi: float) -> int:
            f = (min(max(v, vlo), vhi) - vlo) / (vhi - vlo)
            return round(bottom - f * (bottom - top))

        for i, (lvl, est, k, _r) in enumerate(h):
            x = xs[i]
            img[row(est, 2, half - 3, lo, hi), x] = (150, 150, 150)
            y = row(lvl, 2, half - 3, lo, hi)
            img[max(y - 1, 0) : y + 2, x] = (30, 90, 200)
            y = row(k, half + 2, height - 3, 1, self.num_layers)
            img[max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2] = (200, 60, 30)
        return img

    # --- helpers --------------------------------------------------------------------------------------------------

    def _range_error(self, action) -> str:
        p = self.problem
        if p.relative:
            what = f"relative moves (0 stay; 2i-1 = -i; 2i = +i, i = 1..{p.max_move})"
        else:
            what = f"splits {p.k_min}..{p.k_max} (split = action + {p.k_min})"
        n = p.n_actions
        return f"action {action!r} is invalid: this env takes integers 0..{n - 1} (Discrete({n})), {what}"
