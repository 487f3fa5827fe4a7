"""RLlib PPO as an LLMSplit agent: trained with env runners on a local or remote Ray cluster, logged into the shared
TensorBoard tag tree (`common.logger`), saved as data (weights + JSON) and used like any other agent (``predict``).

Training goes through RLlib's by-id path (``llmsplit_env:<id>`` with the env config as ``env_config``), so each env
runner makes its own envs; ids with a numpy vector env step it in each runner. Ray is started with ``ray.init()``
unless it is running already: set ``RAY_ADDRESS`` (or ``train.py --ray-address``) to use a cluster, whose nodes must
have ``llmsplit_env`` installed.

On the edge cell (``LLMSplit-Cell-v0``) it trains RLlib multi-agent with one policy shared by every UE
(`llmsplit_env.cell.rllib`: the PettingZoo face, agents ``ue_0 … ue_{N-1}``, reward ``(1 − mix)·own + mix·team``),
and ``predict`` acts on the centralised env's observation: it splits it into each UE's (own features, then the shared
ones), runs the shared module on all N and returns the ``[N]`` splits. Saved like the single env's agent: the
centralised spaces in the JSON (an env of the same cell checks against them) and the shared module's weights.

Tags: ``rollout/ep_rew_mean``, ``rollout/ep_len_mean``, ``reward/<component>`` (mean per-step value over the
episodes of the iteration), ``model/*`` (RLlib's learner statistics: ``policy_loss``, ``vf_loss``, ``entropy``,
``mean_kl_loss``, ...), ``cost/quality_evals`` (env steps on a profile env; the live model's evaluations on
``LLMSplit-LLM-v0``) and ``eval/*`` from the zoo's scorer. On the cell, ``rollout/ep_rew_mean`` is the team
return (RLlib's return summed over agents, divided back: `team_return_divisor`), ``reward/<component>`` the mean per
request (idle UEs left out), ``cell/team_reward`` (per step) and ``cell/deadline_miss_rate`` (per request), and
``cost/quality_evals`` the requests served (each stands for one evaluation of the real model, as a profile step does;
the SB3 callbacks count the cell the same way).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from agents.common.env_util import is_live_config
from agents.common.limits import check_network
from agents.common.logger import configure_logger
from agents.common.save_util import (
    SpacesOnlyEnv,
    check_format,
    check_spaces,
    describe_space,
    load_weights,
    not_a_saved,
    predict_actions,
    read_files,
    read_json,
    require_saved,
    space_from,
    state_dict_of_tensors,
    weights_bytes,
    write_files,
)

FORMAT = "llmsplit-rllib-ppo"
VERSION = 1
META = "llmsplit.json"
WEIGHTS = "module.pt"
WHAT = "rllib_ppo agent"
# The id trained multi-agent with a shared policy (`llmsplit_env.cell.rllib`).
CELL_ID = "LLMSplit-Cell-v0"
REQUIRED_META = ("env_id", "hyperparams", "model_config", "seed", "observation_space", "action_space")

# name -> (kind, lowest allowed[, highest allowed]): the hyperparameters this agent takes (besides n_timesteps),
# checked as data
HYPERPARAMS: dict[str, tuple] = {
    "num_env_runners": (int, 0),
    "num_envs_per_env_runner": (int, 1),
    "num_cpus_per_env_runner": (float, 0),
    "lr": (float, 0),
    "gamma": (float, 0, 1),
    "lambda_": (float, 0, 1),
    "train_batch_size": (int, 1),
    "minibatch_size": (int, 1),
    "num_epochs": (int, 1),
    "entropy_coeff": (float, 0),
    "clip_param": (float, 0),
    "vf_loss_coeff": (float, 0),
    "vf_clip_param": (float, 0),
    "fcnet_hiddens": (list, None),
    "fcnet_activation": (str, None),
}
ACTIVATIONS = ("tanh", "relu", "swish", "silu", "elu", "linear")


def _need_rllib() -> None:
    try:
        import ray.rllib  # noqa: F401
    except ImportError as e:
        raise ValueError(f"rllib_ppo needs RLlib: pip install 'llmsplit[rllib]' ({e})") from None


def check_rllib_hyperparams(hp: Mapping[str, Any]) -> dict[str, Any]:
    """``hp`` checked as plain data of the right kind (``ValueError`` naming the key and what is allowed)."""
    out: dict[str, Any] = {}
    for key, value in hp.items():
        if key not in HYPERPARAMS:
            raise ValueError(f"rllib_ppo: unknown hyperparameter {key!r}; allowed: {', '.join(HYPERPARAMS)}")
        kind, lo, *hi = HYPERPARAMS[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, kind):
            raise ValueError(f"rllib_ppo: {key} must be {kind.__name__}, got {value!r}")
        if lo is not None and value < lo:
            raise ValueError(f"rllib_ppo: {key} must be >= {lo}, got {value!r}")
        if hi and value > hi[0]:
            raise ValueError(f"rllib_ppo: {key} must be <= {hi[0]}, got {value!r}")
        if key == "fcnet_hiddens" and not all(isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in value):
            raise ValueError(f"rllib_ppo: fcnet_hiddens must be a list of positive ints, got {value!r}")
        if key == "fcnet_hiddens":
            check_network(value, "rllib_ppo: fcnet_hiddens")
        if key == "fcnet_activation" and value not in ACTIVATIONS:
            raise ValueError(f"rllib_ppo: fcnet_activation must be one of {', '.join(ACTIVATIONS)}, got {value!r}")
        out[key] = value
    return out


def runner_bundles(hp: Mapping[str, Any]) -> list[dict[str, float]]:
    """The Ray resources the env runners of hyperparameters ``hp`` hold (``RLlibPPOAgent``'s defaults for missing
    keys): one ``{"CPU": num_cpus_per_env_runner}`` per remote runner. The learner runs in the driver (RLlib's local
    learner), so it holds nothing of the cluster."""
    import inspect

    defaults = {k: p.default for k, p in inspect.signature(RLlibPPOAgent.__init__).parameters.items()}
    n = int(hp.get("num_env_runners", defaults["num_env_runners"]))
    cpus = float(hp.get("num_cpus_per_env_runner", defaults["num_cpus_per_env_runner"]))
    return [{"CPU": cpus}] * n if cpus > 0 else []


def _runners_text(bundles: list[dict[str, float]]) -> str:
    n, cpus = len(bundles), bundles[0]["CPU"]
    return (f"rllib_ppo: {n} env runner{'s' * (n != 1)} x {cpus:g} CPU (num_env_runners {n}, "
            f"num_cpus_per_env_runner {cpus:g})")  # fmt: skip


def check_runner_resources(hp: Mapping[str, Any], fixed: bool | None = None) -> None:
    """``ValueError`` naming the runners asked for and what there is, instead of RLlib waiting for ever for env
    runners that can never be placed. In a placement group (a Tune trial: ``llmsplit sweep``) the runners go into
    the group's bundles beside the trial's own (bundle 0), which never grow: checked at once. Elsewhere against the
    cluster's nodes (`llmsplit_env.util.ray_cluster.require_resources`: at once on a local instance, within a
    bounded wait on a cluster that may grow)."""
    from ray.util import get_current_placement_group

    from llmsplit_env.util.ray_cluster import require_resources

    bundles = runner_bundles(hp)
    if not bundles:
        return
    pg = get_current_placement_group()
    if pg is None:
        require_resources(bundles, _runners_text(bundles), fixed=fixed)
        return
    problem = runners_in_bundles(hp, pg.bundle_specs[1:], "the Tune trial's placement group beyond its own bundle")
    if problem is not None:
        raise ValueError(problem)


def runners_in_bundles(hp: Mapping[str, Any], room: list[dict[str, float]], where: str) -> str | None:
    """Why the env runners of ``hp`` can never fit in the placement-group bundles ``room`` (``where`` names them),
    with the sweep flag that gives them room; None if they fit."""
    from llmsplit_env.util.ray_cluster import unplaceable

    bundles = runner_bundles(hp)
    why = unplaceable(bundles, room, where, "bundle") if bundles else None
    if why is None:
        return None
    # the sweep's worker bundles hold 1 CPU each: enough of them for every runner
    need = sum(math.ceil(len(bundles) / max(1, math.floor(1 / b["CPU"] + 1e-9))) for b in bundles[:1])
    return (f"{_runners_text(bundles)} need {why}; in a sweep give --worker-cpus-per-trial {need} (one-CPU bundles "
            "for the runners), or fewer runners")  # fmt: skip


def _build_module(observation_space: gym.Space, action_space: gym.Space, model_config: Mapping[str, Any]):
    """RLlib's default PPO torch module (policy and value heads) for these spaces and model config."""
    from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule

    return DefaultPPOTorchRLModule(observation_space=observation_space, action_space=action_space,
                                   model_config=dict(model_config), inference_only=False)  # fmt: skip


def _reward_callback_class():
    """An RLlib callback that logs, per finished episode, the mean per-step ``info["rewards"]`` components."""
    from ray.rllib.callbacks.callbacks import RLlibCallback

    class RewardComponents(RLlibCallback):
        def on_episode_end(self, *, episode, metrics_logger, **kwargs) -> None:
            # RLlib hands over the episode's last chunk; its first info closes the previous chunk (or is the reset's)
            steps = episode.get_infos()[1:]
            sums: dict[str, float] = {}
            for info in steps:
                for c, v in (info.get("rewards") or {}).items():
                    sums[c] = sums.get(c, 0.0) + float(v)
            for c, v in sums.items():
                metrics_logger.log_value(("llmsplit", "reward", c), v / max(len(steps), 1), reduce="mean")

    return RewardComponents


def _cell_reward_callback_class():
    """The cell's counterpart of `_reward_callback_class`, per finished episode (its last chunk), as the SB3 tag tree
    has them on the cell: each reward component's mean per request (idle UEs left out), the deadline-miss rate per
    request and the team reward per step."""
    from ray.rllib.callbacks.callbacks import RLlibCallback

    class CellRewardComponents(RLlibCallback):
        def on_episode_end(self, *, episode, metrics_logger, **kwargs) -> None:
            sums: dict[str, float] = {}
            requests = misses = 0
            team: dict[int, float] = {}  # step -> the team reward (every agent's info holds it)
            for agent_episode in episode.agent_episodes.values():
                steps = agent_episode.get_infos()[1:]  # the first info closes the previous chunk (or is the reset's)
                for t, info in enumerate(steps):
                    if "team_reward" in info:
                        team[t] = float(info["team_reward"])
                    if not info.get("active"):
                        continue
                    requests += 1
                    misses += bool(info.get("deadline_miss"))
                    for c, v in (info.get("rewards") or {}).items():
                        sums[c] = sums.get(c, 0.0) + float(v)
            for c, v in sums.items():
                metrics_logger.log_value(("llmsplit", "reward", c), v / max(requests, 1), reduce="mean")
            if requests:
                metrics_logger.log_value(("llmsplit", "cell", "deadline_miss_rate"), misses / requests, reduce="mean")
            if team:
                metrics_logger.log_value(("llmsplit", "cell", "team_reward"), sum(team.values()) / len(team),
                                         reduce="mean")  # fmt: skip

    return CellRewardComponents


def team_return_divisor(cell_config: Mapping[str, Any]) -> float:
    """What RLlib's episode return on the cell (every agent's reward summed) is divided by to give the team return of
    ``LLMSplit-Cell-v0``: agent i earns ``(1 − mix)·r_i + mix·team`` and idle UEs earn 0, so the sum is ``N·team``
    with the ``"mean"`` team aggregate (``team = Σ r_i / N``) and ``(1 − mix + mix·N)·team`` with ``"sum"``."""
    cell = cell_config["cell"]
    n, mix = int(cell["n_ues"]), float(cell["team"]["mix"])
    return float(n) if cell["team"]["aggregate"] == "mean" else 1.0 - mix + mix * n


def _runner_requests_served(runner) -> int:
    """Requests the env runner's cell envs have served in their lifetime (`llmsplit_env.cell.rllib`'s counter)."""
    env = getattr(runner, "env", None)
    if env is None:  # the driver's local runner holds no env when remote runners sample
        return 0
    return sum(int(getattr(e.unwrapped, "requests_served", 0)) for e in getattr(env, "envs", [env]))


def _runner_quality_evals(runner) -> int:
    """Real evaluations the env runner's envs have run in their lifetime (resets included): the live model's count."""
    env = getattr(runner, "env", None)
    if env is None:  # the driver's local runner holds no env when remote runners sample
        return 0
    u = env.unwrapped
    subs = [e.unwrapped for e in u.envs] if hasattr(u, "envs") else [u]
    return sum(int(getattr(e, "total_quality_evals", 0)) for e in subs)


class RLlibPPOAgent:
    """RLlib PPO (new API stack) on an LLMSplit id.

    :param env: an env of the id (its spaces and config; training makes its own envs in the env runners)
    :param env_id: the registered id trained on
    :param env_kwargs: the env's config keys (RLlib's ``env_config``)
    :param seed: RLlib's seed (env runners seed their envs from it)
    :param tensorboard_log: TensorBoard root (runs ``RLLIB_PPO_<n>``), or None
    :param num_env_runners: remote env runners (0: sample in the driver)
    :param train_batch_size: env steps per training iteration (on the cell: cell steps, each with N agent steps)
    Other parameters are RLlib's PPO settings (``lambda_`` is GAE's lambda), and the MLP of both heads.
    """

    def __init__(
        self,
        env: gym.Env,
        env_id: str = "LLMSplit-v0",
        env_kwargs: Mapping[str, Any] | None = None,
        seed: int = 0,
        tensorboard_log: str | None = None,
        num_env_runners: int = 2,
        num_envs_per_env_runner: int = 1,
        num_cpus_per_env_runner: float = 1.0,
        lr: float = 3e-4,
        gamma: float = 0.99,
        lambda_: float = 0.95,
        train_batch_size: int = 2000,
        minibatch_size: int = 250,
        num_epochs: int = 10,
        entropy_coeff: float = 0.0,
        clip_param: float = 0.2,
        vf_loss_coeff: float = 1.0,
        vf_clip_param: float = 10.0,
        fcnet_hiddens: Sequence[int] = (64, 64),
        fcnet_activation: str = "tanh",
    ) -> None:
        _need_rllib()
        hp = {k: v for k, v in locals().items() if k in HYPERPARAMS}
        hp["fcnet_hiddens"] = list(fcnet_hiddens)
        self.hparams = check_rllib_hyperparams(hp)
        if self.hparams["minibatch_size"] > self.hparams["train_batch_size"]:
            raise ValueError(
                f"rllib_ppo: minibatch_size ({minibatch_size}) must be <= train_batch_size ({train_batch_size})"
            )
        self.env_id = env_id.split(":", 1)[-1]
        self.env_kwargs = dict(env_kwargs or {})
        self.seed = int(seed)
        self.tensorboard_log = tensorboard_log
        self.observation_space = env.observation_space
        self.action_space = env.action_space
        # What the module sees and does: the env's spaces, or on the cell one UE's (the shared policy acts per UE)
        self.cell = self.env_id == CELL_ID
        self.module_observation_space, self.module_action_space = self.observation_space, self.action_space
        self.n_ues = None
        if self.cell:
            from llmsplit_env.cell.rllib import agent_spaces

            self.n_ues = len(self.action_space.nvec)
            self.module_observation_space, self.module_action_space = agent_spaces(env.observation_space,
                                                                                   env.action_space)  # fmt: skip
        self.live = is_live_config(getattr(env.unwrapped, "config", None))
        # PPO's own defaults (separate policy and value encoders) are part of the module's layout, so the saved
        # model config is the merged one RLlib builds from, not just our keys.
        self.model_config = dict(self.algorithm_config().model_config)
        self.module = None  # the trained policy (inference only), set by `learn` or `load`
        self.num_timesteps = 0
        self.quality_evals = 0

    def algorithm_config(self):
        """RLlib's `PPOConfig` this agent trains with (by id, seeded, with the reward-component callback)."""
        from ray.rllib.algorithms.ppo import PPOConfig

        from llmsplit_env.rllib import vectorize_mode

        h = self.hparams
        if self.cell:
            return self._cell_algorithm_config()
        config = (
            PPOConfig()
            .environment(f"llmsplit_env:{self.env_id}", env_config=dict(self.env_kwargs))
            .env_runners(num_env_runners=h["num_env_runners"], num_envs_per_env_runner=h["num_envs_per_env_runner"],
                         num_cpus_per_env_runner=h["num_cpus_per_env_runner"],
                         gym_env_vectorize_mode=vectorize_mode(self.env_id))
            .callbacks(_reward_callback_class())
        )  # fmt: skip
        return self._ppo_settings(config)

    def _cell_algorithm_config(self):
        """The cell's `PPOConfig`: its multi-agent face by the registered name, every UE mapped to one module."""
        from ray.rllib.algorithms.ppo import PPOConfig

        from llmsplit_env.cell.rllib import CELL_MA_ID, shared_policy

        h = self.hparams
        # RLlib's multi-agent env runner vectorises with Gymnasium's sync mode (the default): no vector entry point
        config = (
            PPOConfig()
            .environment(CELL_MA_ID, env_config=dict(self.env_kwargs))
            .env_runners(num_env_runners=h["num_env_runners"], num_envs_per_env_runner=h["num_envs_per_env_runner"],
                         num_cpus_per_env_runner=h["num_cpus_per_env_runner"])
            .multi_agent(**shared_policy())
            .callbacks(_cell_reward_callback_class())
        )  # fmt: skip
        return self._ppo_settings(config)

    def _ppo_settings(self, config):
        """``config`` with this agent's PPO training and network settings and its seed (both faces share them)."""
        h = self.hparams
        return (
            config
            .training(lr=h["lr"], gamma=h["gamma"], lambda_=h["lambda_"],
                      train_batch_size_per_learner=h["train_batch_size"], minibatch_size=h["minibatch_size"],
                      num_epochs=h["num_epochs"], entropy_coeff=h["entropy_coeff"], clip_param=h["clip_param"],
                      vf_loss_coeff=h["vf_loss_coeff"], vf_clip_param=h["vf_clip_param"])
            .rl_module(model_config={"fcnet_hiddens": h["fcnet_hiddens"], "fcnet_activation": h["fcnet_activation"]})
            .debugging(seed=self.seed)
        )  # fmt: skip

    @property
    def module_id(self) -> str:
        """The RLModule id trained: RLlib's default one, or on the cell the one every UE shares."""
        from ray.rllib.core import DEFAULT_MODULE_ID

        if self.cell:
            from llmsplit_env.cell.rllib import SHARED_MODULE_ID

            return SHARED_MODULE_ID
        return DEFAULT_MODULE_ID

    def learn(
        self,
        total_timesteps: int,
        callback: Callable[[dict[str, Any]], bool | None] | None = None,
        eval_fn: Callable[[RLlibPPOAgent], Mapping[str, float]] | None = None,
        eval_freq: int | None = None,
        eval_at: Sequence[int] | None = None,
        tb_log_name: str = "RLLIB_PPO",
    ) -> RLlibPPOAgent:
        """Train until ``total_timesteps`` env steps are sampled (whole iterations of ``train_batch_size``).

        ``eval_fn(agent)`` (the zoo's scorer) runs after the iteration that passes each multiple of ``eval_freq`` env
        steps (or, with ``eval_at``, each of those real-evaluation counts), and after the last one; its values go to
        ``eval/*``. ``callback(locals())`` is called after every iteration (``result``: RLlib's); returning ``False``
        stops. An agent trains once: build a new one to train again.
        """
        import ray

        if isinstance(total_timesteps, bool) or not isinstance(total_timesteps, int) or total_timesteps < 1:
            raise ValueError(f"total_timesteps must be an integer >= 1, got {total_timesteps!r}")
        if self.module is not None:
            raise ValueError("this rllib_ppo agent is trained already; build a new one to train again")
        fixed = None  # a local instance started by connect_ray is fixed; a cluster joined elsewhere may grow
        if not ray.is_initialized():
            ray.init(include_dashboard=False, log_to_driver=False)  # RAY_ADDRESS, when set, names the cluster
            fixed = not os.environ.get("RAY_ADDRESS")  # a local instance: what it lacks now it never gets
        # RLlib would wait for ever for env runners the cluster can never place (2 runners x 1 CPU inside a sweep
        # trial without worker bundles, or on a 1-CPU cluster): refuse, naming both, before anything is built
        check_runner_resources(self.hparams, fixed)
        divisor = 1.0
        threads = torch.get_num_threads()
        if self.cell:
            from llmsplit_env.cell.config import resolve_cell_config
            from llmsplit_env.cell.rllib import register_cell_with_rllib
            from llmsplit_env.config import merge_config_kwargs

            register_cell_with_rllib()
            keys = dict(self.env_kwargs)  # as the env takes them: ``config`` and/or top-level config keys
            divisor = team_return_divisor(resolve_cell_config(merge_config_kwargs(keys.pop("config", None), keys)))
            # The cell samples in the driver by default (0 env runners on 2 CPUs): torch's intra-op threads spin
            # against the sampler for tiny matrices; one thread measured ~8x faster per iteration on 2 shared cores.
            torch.set_num_threads(1)
        by_evals = bool(eval_at)
        step = eval_freq or total_timesteps
        marks = sorted(int(x) for x in eval_at) if eval_at else list(range(step, total_timesteps + step, step))
        logger = configure_logger(self.tensorboard_log, tb_log_name)
        algo = None
        try:
            algo = self.algorithm_config().build_algo()
            while self.num_timesteps < total_timesteps:
                result = algo.train()
                self.num_timesteps = int(result["num_env_steps_sampled_lifetime"])
                if self.cell:  # a request served on a profile stands for one evaluation of the real model
                    counts = algo.env_runner_group.foreach_env_runner(_runner_requests_served, local_env_runner=True)
                    self.quality_evals = int(sum(counts))
                elif self.live:
                    counts = algo.env_runner_group.foreach_env_runner(_runner_quality_evals, local_env_runner=True)
                    self.quality_evals = int(sum(counts))
                else:  # a profile step stands for one evaluation of the real model
                    self.quality_evals = self.num_timesteps
                runners = result.get("env_runners", {})
                if "episode_return_mean" in runners:
                    logger.record("rollout/ep_rew_mean", float(runners["episode_return_mean"]) / divisor)
                    logger.record("rollout/ep_len_mean", float(runners["episode_len_mean"]))
                for c, v in runners.get("llmsplit", {}).get("reward", {}).items():
                    logger.record(f"reward/{c}", float(v))
                for c, v in runners.get("llmsplit", {}).get("cell", {}).items():
                    logger.record(f"cell/{c}", float(v))
                for k, v in result.get("learners", {}).get(self.module_id, {}).items():
                    if isinstance(v, (int, float, np.number)):
                        logger.record(f"model/{k}", float(v))
                logger.record("cost/quality_evals", self.quality_evals)
                done = self.num_timesteps >= total_timesteps
                x = self.quality_evals if by_evals else self.num_timesteps
                if eval_fn is not None and (done or (marks and x >= marks[0])):
                    self.module = self._local_module(algo)
                    for k, v in eval_fn(self).items():
                        logger.record(f"eval/{k}", float(v))
                    logger.record("eval/quality_evals", self.quality_evals)
                    marks = [m for m in marks if m > x]
                logger.dump(self.num_timesteps)
                if callback is not None and callback(locals()) is False:
                    break
            self.module = self._local_module(algo)
        finally:
            if algo is not None:
                algo.stop()
            torch.set_num_threads(threads)
            logger.close()
        return self

    def _local_module(self, algo) -> Any:
        """A driver-side copy of the learner's current module (policy and value heads)."""
        from ray.rllib.core import COMPONENT_LEARNER, COMPONENT_RL_MODULE

        module_id = self.module_id
        path = f"{COMPONENT_LEARNER}/{COMPONENT_RL_MODULE}/{module_id}"
        state = algo.learner_group.get_state(components=path)
        state = state[COMPONENT_LEARNER][COMPONENT_RL_MODULE][module_id]
        module = _build_module(self.module_observation_space, self.module_action_space, self.model_config)
        # strict: RLModule.set_state would skip keys silently, leaving a layer at its random initialisation
        module.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()})
        module.eval()
        return module

    # ------------------------------------------------------------------------------------------ acting
    def predict(self, observation, state=None, episode_start=None, deterministic: bool = True):
        """SB3-style: ``(action(s), state)`` for one observation (an ``int``) or a batch (``[N]``): greedy, or sampled
        with ``deterministic=False``. On the cell: the centralised observation ``[D]`` (or ``[B, D]``) gives the UEs'
        ``[N]`` (or ``[B, N]``) actions, each from the shared module on that UE's own and the shared features."""
        if self.module is None:
            raise ValueError("this rllib_ppo agent is untrained: call learn() or load a saved one")
        if self.cell:
            return self._predict_cell(observation, deterministic), state

        def act(batch: np.ndarray, masks: None) -> np.ndarray:
            with torch.no_grad():
                logits = self.module.forward_inference({"obs": torch.as_tensor(batch)})["action_dist_inputs"]
                if deterministic:
                    return logits.argmax(-1).numpy()
                return torch.distributions.Categorical(logits=logits).sample().numpy()

        actions = predict_actions(observation, act)
        return (int(actions) if actions.ndim == 0 else actions), state

    def _predict_cell(self, observation, deterministic: bool) -> np.ndarray:
        from llmsplit_env.cell.rllib import split_centralised_obs

        dim = self.observation_space.shape[0]
        obs = np.asarray(observation, dtype=np.float32)
        if obs.ndim not in (1, 2) or obs.shape[-1] != dim:
            raise ValueError(f"observation must have shape [{dim}] or [B, {dim}] (the cell's), got {obs.shape}")
        per_ue = torch.as_tensor(split_centralised_obs(obs, self.n_ues))  # [(B,) N, F + 1 + 4]
        with torch.no_grad():
            logits = self.module.forward_inference({"obs": per_ue.reshape(-1, per_ue.shape[-1])})["action_dist_inputs"]
            acts = logits.argmax(-1) if deterministic else torch.distributions.Categorical(logits=logits).sample()
        return acts.numpy().astype(np.int64).reshape(per_ue.shape[:-1])

    # ------------------------------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike) -> None:
        """Write the policy as a zip of ``llmsplit.json`` (hyperparameters, spaces, env) and ``module.pt`` (weights
        only), atomically."""
        if self.module is None:
            raise ValueError("this rllib_ppo agent is untrained: nothing to save")
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "algo": "rllib_ppo",
            "env_id": self.env_id,
            "env_kwargs": self.env_kwargs,
            "hyperparams": dict(self.hparams),
            "model_config": dict(self.model_config),
            "seed": self.seed,
            "num_timesteps": int(self.num_timesteps),
            "quality_evals": int(self.quality_evals),
            "observation_space": describe_space(self.observation_space),
            "action_space": describe_space(self.action_space),
        }
        if self.cell:  # what the weights are: informative (load derives the module's spaces from the ones above)
            meta["shared_policy"] = {"module_id": self.module_id, "n_ues": self.n_ues,
                                     "module_observation_space": describe_space(self.module_observation_space),
                                     "module_action_space": describe_space(self.module_action_space)}  # fmt: skip
        try:
            meta_text = json.dumps(meta, indent=1)
        except TypeError as e:
            raise ValueError(f"rllib_ppo: env_kwargs must be plain data (JSON) to be saved: {e}") from None
        weights = weights_bytes({k: v.detach().cpu() for k, v in self.module.state_dict().items()})
        write_files(path, {META: meta_text.encode(), WEIGHTS: weights}, as_zip=True)

    @classmethod
    def load(cls, path: str | os.PathLike, env: gym.Env | None = None) -> RLlibPPOAgent:
        """Read a file `save` wrote (no code runs from it: JSON and ``torch.load(weights_only=True)``). With ``env``,
        its spaces must be the saved ones."""
        _need_rllib()
        path = str(require_saved(path, "rllib_ppo agent"))
        read = read_files(path, WHAT, directories=False)
        meta = read_json(read, META, path, WHAT)
        check_format(meta, FORMAT, None, path, WHAT)
        try:
            weights = read(WEIGHTS)
        except KeyError as e:
            raise not_a_saved(path, WHAT, e) from None
        missing = [k for k in REQUIRED_META if k not in meta]
        if missing:
            raise ValueError(f"{path}: llmsplit.json lacks {', '.join(missing)}")
        obs_space = space_from(meta["observation_space"], path)
        act_space = space_from(meta["action_space"], path)
        if env is not None:
            check_spaces(env, meta, path)
        try:  # the hyperparameters are checked (kinds, ranges, network widths) before anything is built
            agent = cls(SpacesOnlyEnv(obs_space, act_space), env_id=meta["env_id"], env_kwargs=meta.get("env_kwargs"),
                        seed=int(meta["seed"]), **meta["hyperparams"])  # fmt: skip
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
        agent.num_timesteps = int(meta.get("num_timesteps", 0))
        agent.quality_evals = int(meta.get("quality_evals", 0))
        # The module is built from the checked hyperparameters (as `learn` built it), not from the file's model_config:
        # its layer widths are bounded (with the saved spaces' sizes) before anything is allocated.
        model_config = agent.model_config
        m_obs, m_act = agent.module_observation_space, agent.module_action_space
        n_out = int(m_act.n) if isinstance(m_act, gym.spaces.Discrete) else 0
        for key, widths in model_config.items():
            if key.endswith("hiddens") and widths:
                check_network(list(widths), f"{path}: {key}", gym.spaces.flatdim(m_obs), n_out)
        module = _build_module(m_obs, m_act, model_config)
        state = state_dict_of_tensors(load_weights(weights, f"{path}: {WEIGHTS}"), f"{path}: {WEIGHTS}")
        try:
            module.load_state_dict(state)
        except (RuntimeError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: the saved weights do not fit the module its model_config builds ({e})") from None
        module.eval()
        agent.module = module
        return agent


def rllib_hyperparam_keys() -> list[str]:
    return [*HYPERPARAMS, "n_timesteps"]
