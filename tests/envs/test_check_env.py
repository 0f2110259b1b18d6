"""Registry-wide env contract: every registered Pivot env passes Gymnasium's check_env, in both
modes. A new domain gets this test for free once it is registered in pivot_envs/__init__.py."""

from __future__ import annotations

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import pivot_envs

# per-env constructor arguments that keep the check small and fast
SMALL = {
    "PivotTerminal-v0": lambda backend: {"sandbox": backend, "trajectory": 0, "reset_to_turn": 1},
    "PivotToolUse-v0": lambda backend: {"trajectory": 0, "reset_to_turn": 1},
}


@pytest.mark.parametrize("mode", ["pivot", "episode"])
@pytest.mark.parametrize("env_id", pivot_envs.ENV_IDS)
def test_check_env(env_id, mode, sandbox_backend):
    if env_id != "PivotTerminal-v0" and sandbox_backend.name != "local":
        pytest.skip("backend-independent env: checked once")
    kwargs = SMALL[env_id](sandbox_backend)
    env = gym.make(env_id, mode=mode, **kwargs)
    try:
        check_env(env.unwrapped, skip_render_check=True)
    finally:
        env.close()


def test_step_before_reset_is_a_clear_error(local_backend):
    from pivot_envs.errors import EnvStateError

    env = gym.make("PivotTerminal-v0", sandbox=local_backend, trajectory=0)
    try:
        with pytest.raises(EnvStateError, match="reset"):
            env.unwrapped.step("ls")
    finally:
        env.close()
