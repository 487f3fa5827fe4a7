"""RSM-PPO: the paper's method as published (reward surrogate model + PPO trained entirely inside it).

1. Collect ``n_real`` real transitions with uniformly random allowed actions (the only real quality evaluations).
2. Fit the reward surrogate on (observed level, split) → the reward's quality-dependent part: the authors' MLP
   2→128→128→1 with ReLU on raw features (``surrogate="mlp"``), or our `GaussianEnsemble` (``"ensemble"``, its mean).
   Features (`agents.mbrl.ensemble.encode_inputs`): ``(level, k)`` for the paper preset (their raw ``(ρ, p)``),
   ``(observation dims named by obs_dims, k / L)`` otherwise.
3. Train SB3 PPO for ``total_timesteps`` inside `SurrogateRewardWrapper`: a *profile-backend* copy of the env's
   config (it samples the channel; a profile step costs no real evaluation, and a live-LLM env is never called) whose
   reward is replaced by ``surrogate(features) + the known terms``.
4. Evaluate on the real reward (`evaluate_agent` / `OracleNormalisedEvalCallback` on the real env).

**Target** (``target``): ``"quality_terms"`` (default, as the authors: their surrogate predicts the perplexity term and
the load term ``(10 − p)/10`` is computed in closed form): the surrogate learns ``Σ w_c r_c`` over the weighted
components that depend on the quality backend (``quality``, ``ppl_gain``); the others (``ue_compute``, ``privacy``,
``switching``, ``latency``, ``paper_load``) come exactly from ``info["rewards"]``. ``"reward"``: the surrogate learns
the whole reward except the switching term (which depends on the previous split, not in its input); switching is
added exactly.

Cost: ``quality_evals = n_real`` (for the live backend, the evaluations the env reports during collection, which
differ from ``n_real`` when steps at ``k = L`` or paper-term resets occur).

TensorBoard (the shared tag tree): PPO's ``rollout/*`` and ``model/*`` (mirrored ``train/*``), ``model/surrogate_*``
(fit losses), ``reward/<component>`` (the profile copy's components during the surrogate phase: free, unseen by the
agent), ``cost/quality_evals`` (constant ``n_real``), and ``eval/*`` from an eval callback on the real env.
"""

from agents.rsm.agent import RSMPPOAgent
from agents.rsm.env import SurrogateRewardWrapper, SurrogateStatsCallback, make_surrogate_env, surrogate_env_config
from agents.rsm.surrogate import EnsembleSurrogate, MLPSurrogate, SurrogateFeatures, surrogate_from_state

__all__ = [
    "EnsembleSurrogate",
    "MLPSurrogate",
    "RSMPPOAgent",
    "SurrogateFeatures",
    "SurrogateRewardWrapper",
    "SurrogateStatsCallback",
    "make_surrogate_env",
    "surrogate_env_config",
    "surrogate_from_state",
]
