"""pivot_envs: Gymnasium environments that reset to any turn of an SFT trajectory.

Importing this package registers the envs (lazy entry points, Gymnasium style):

    import gymnasium as gym, pivot_envs
    env = gym.make("PivotTerminal-v0", reset_to_turn=3, sandbox="local")
"""

from gymnasium.envs.registration import register, registry

from pivot_envs.trajectory import Trajectory, load_trajectories, save_jsonl
from pivot_envs.verdict import Verdict

ENV_IDS = ("PivotTerminal-v0", "PivotToolUse-v0")

if "PivotTerminal-v0" not in registry:
    register(id="PivotTerminal-v0", entry_point="pivot_envs.domains.terminal.env:TerminalEnv")
if "PivotToolUse-v0" not in registry:
    register(id="PivotToolUse-v0", entry_point="pivot_envs.domains.tooluse.env:ToolUseEnv")

__all__ = ["Trajectory", "load_trajectories", "save_jsonl", "Verdict", "ENV_IDS"]
