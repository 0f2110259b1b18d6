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



def close_all() -> None:
    """Release everything the envs of this process share (snapshots, sandbox backends made by name
    and their containers, volumes, mounts, cgroups and temp dirs), whether or not every env was
    closed. Closing the last open env does the same; this also runs at interpreter exit."""
    from pivot_envs.sandboxed_env import close_shared_sandboxes

    close_shared_sandboxes()


__all__ = ["ENV_IDS", "EnvSpec", "Trajectory", "Verdict", "close_all", "env_specs", "load_trajectories",
           "save_jsonl"]
