"""Registry-wide env contract: every registered Pivot env passes Gymnasium's check_env, in both
modes, on every sandbox backend it declares. The cases come from the domains' `ENV_SPEC`s
(pivot_envs/registration.py), so a new domain gets this test for free once it declares one."""

from __future__ import annotations

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

from pivot_envs.registration import env_specs
from pivot_envs.sandbox import capabilities

SPECS = {spec.id: spec for spec in env_specs()}
CASES = [pytest.param(spec.id, backend, id=f"{spec.id}-{backend or 'no-sandbox'}",
                      marks=[getattr(pytest.mark, m) for m in capabilities(backend).test_markers] if backend else [])
         for spec in SPECS.values() for backend in (spec.sandboxes or (None,))]


def test_every_registered_pivot_env_has_a_spec():
    from gymnasium.envs.registration import registry

    import pivot_envs

    registered = {k for k, s in registry.items() if str(s.entry_point).startswith("pivot_envs.")}
    assert set(pivot_envs.ENV_IDS) == set(SPECS) and set(SPECS) <= registered
    assert "PivotSWE-v0" in SPECS


@pytest.mark.parametrize("mode", ["pivot", "episode"])
@pytest.mark.parametrize(("env_id", "backend"), CASES)
def test_check_env(env_id, backend, mode, request):
    kwargs = dict(SPECS[env_id].check_kwargs)
    if backend is not None:
        kwargs["sandbox"] = request.getfixturevalue(f"{backend}_backend")
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
