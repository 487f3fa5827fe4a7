"""Model-based RL: a probabilistic ensemble (`ensemble`), planning over splits (`planning`) and the agent (`agent`)."""
