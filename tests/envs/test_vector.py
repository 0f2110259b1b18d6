"""`gym.make_vec` over every registered Pivot env, sync and async, with per-env trajectory / turn.

Iterates Gymnasium's registry (every id whose entry point lives in `pivot_envs`), so a domain
registered later is covered without editing this file. Async mode runs each env in a subprocess
(forked, or spawned: then the env is rebuilt from its pickled spec alone) and creates its sandbox
there; a forked child drops the backends it inherited (pivot_envs/sandboxed_env.py), which used to
collide with the parent's snapshot directories. The
observation space is a custom one (conversations are not tensors), so async mode needs
`vector_kwargs={"shared_memory": False}` - Gymnasium's own rule for custom spaces.

Per-env options, with Gymnasium's own API:
- `envs.set_attr("default_trajectory", [id_0, id_1, ...])` and `envs.set_attr("reset_to_turn",
  [k_0, k_1, ...])`: what each env resets to (also on autoreset);
- `envs.reset(options={"reset_mask": mask, "trajectory": t, "turn": k})`: reset only the masked envs
  to (t, k).
"""

from __future__ import annotations

import shutil

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.registration import registry

import pivot_envs  # registers the envs
from tests.conftest import require

PIVOT_ENV_IDS = sorted(k for k, spec in registry.items() if str(spec.entry_point).startswith("pivot_envs."))

# Small, fast constructor arguments per domain. An env registered later runs with its defaults and is
# marked slow (PivotSWE-v0 in Docker: about a minute per mode here), so CI still covers it.
KWARGS = {
    "PivotTerminal-v0": {"sandbox": "local"},
    "PivotToolUse-v0": {"categories": ["base"], "limit": 4},
}


def _prerequisites(env_id: str) -> None:
    if KWARGS.get(env_id, {}).get("sandbox") == "local":
        require(shutil.which("bwrap") is not None, "bubblewrap (bwrap) is needed by the local sandbox")


def _per_env(batched: dict, i: int) -> dict:
    """Env i's value of a nested dict that the vector env batched (`key` arrays with `_key` masks)."""
    return {k: v[i] for k, v in batched.items() if not k.startswith("_") and batched[f"_{k}"][i]}


def _make(env_id: str, mode: str, num_envs: int):
    """mode "async-spawn": fresh interpreters, so the env must be rebuilt from its pickled spec alone."""
    vector_kwargs = None
    if mode.startswith("async"):
        vector_kwargs = {"shared_memory": False, **({"context": "spawn"} if mode == "async-spawn" else {})}
        mode = "async"
    return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode=mode, vector_kwargs=vector_kwargs,
                        **KWARGS.get(env_id, {}))


def test_every_registered_domain_is_covered():
    assert {"PivotTerminal-v0", "PivotToolUse-v0"} <= set(PIVOT_ENV_IDS)
    assert set(pivot_envs.ENV_IDS) <= set(PIVOT_ENV_IDS)


@pytest.mark.parametrize("mode", ["sync", "async", "async-spawn"])
@pytest.mark.parametrize("env_id", [pytest.param(e, marks=() if e in KWARGS else pytest.mark.slow) for e in PIVOT_ENV_IDS])
def test_make_vec_resets_each_env_to_its_own_turn_and_judges_its_own_reference(env_id, mode):
    _prerequisites(env_id)
    probe = gym.make(env_id, **KWARGS.get(env_id, {}))
    loaded = probe.unwrapped.trajectories
    probe.close()
    trajs = [loaded[0], loaded[1] if len(loaded) > 1 else loaded[0]]  # a suite of one: two turns of it
    ids = [t.id for t in trajs]
    turns = [0, min(1, trajs[1].num_turns - 1)]
    envs = _make(env_id, mode, 2)
    try:
        envs.set_attr("default_trajectory", ids)
        envs.set_attr("reset_to_turn", turns)
        obs, info = envs.reset(seed=0)
        assert isinstance(obs, tuple) and len(obs) == 2
        assert list(info["trajectory_id"]) == ids and list(info["turn"]) == turns
        for i, t in enumerate(trajs):
            assert obs[i]["messages"] == t.prefix(turns[i]), f"env {i} observes its own conversation"
        refs = tuple(_per_env(info["reference"], i) for i in range(2))
        assert refs[0]["content"] == trajs[0].reference(turns[0]).get("content")

        # each env judges the demonstration at its own state: reward 1, nothing masked
        _, reward, terminated, _, info = envs.step(refs)
        assert reward.tolist() == [1.0, 1.0], info.get("reason")
        assert terminated.all() and not np.any(info["masked"])

        # a wrong answer is reward 0 with a reason, not masked (after the autoreset step)
        envs.step(("autoreset", "autoreset"))
        _, reward, _, _, info = envs.step(("Done.", "ok"))
        assert reward.tolist() == [0.0, 0.0] and not np.any(info["masked"])
        assert all(isinstance(r, str) and r for r in info["reason"])

        # reset only env 1, to env 0's trajectory at turn 0 (reset_mask + options)
        _, info = envs.reset(options={"reset_mask": np.array([False, True]), "trajectory": ids[0], "turn": 0})
        assert info["trajectory_id"][1] == ids[0] and info["turn"][1] == 0
        assert not info["_trajectory_id"][0], "env 0 was not reset"
    finally:
        envs.close()
