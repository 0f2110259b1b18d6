"""pivot_envs: Gymnasium environments that reset to any turn of an SFT trajectory.

Importing this package registers the envs each domain declares (`ENV_SPEC` in
`pivot_envs/domains/<name>/__init__.py`; lazy entry points, Gymnasium style):

    import gymnasium as gym, pivot_envs
    env = gym.make("PivotTerminal-v0", reset_to_turn=3, sandbox="local")
"""

from pivot_envs.registration import EnvSpec, env_specs, register_all
from pivot_envs.trajectory import Trajectory, load_trajectories, save_jsonl
from pivot_envs.verdict import Verdict

ENV_IDS = register_all()

__all__ = ["ENV_IDS", "EnvSpec", "Trajectory", "Verdict", "env_specs", "load_trajectories", "save_jsonl"]
