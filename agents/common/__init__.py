"""What every agent shares: the agent protocol, saving and loading, env helpers, evaluation, callbacks, the
TensorBoard logger and hyperparameter files."""
