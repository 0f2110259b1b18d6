"""Fixtures for the tool-use domain: the converted BFCL suite (needs bfcl-eval) and a tiny custom
backend with a call that never returns."""

from __future__ import annotations

import importlib.util
import json
import os
import textwrap

import pytest


def require(ok: bool, why: str) -> None:
    """Skip on a dev machine, fail under CI=true (CI installs bfcl-eval)."""
    if not ok:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI must provision this: {why}")
        pytest.skip(why)


@pytest.fixture(scope="session")
def bfcl_suite():
    require(importlib.util.find_spec("bfcl_eval") is not None, "bfcl-eval not installed (pip install --no-deps bfcl-eval)")
    from pivot_envs.domains.tooluse import bfcl

    return bfcl.load_suite()


HANG_BACKEND = textwrap.dedent('''
    class CounterAPI:
        """A tiny stateful backend for tests: one counter, a call that raises, a call that never returns."""

        def __init__(self):
            self.count = 0

        def _load_scenario(self, scenario, long_context=False):
            self.count = scenario.get("count", 0)

        def bump(self, by: int = 1):
            self.count += by
            return {"count": self.count}

        def boom(self):
            raise ValueError("boom on purpose")

        def hang(self):
            while True:
                pass
''')


def _tool(name, props=None, required=()):
    return {"type": "function", "function": {"name": name, "description": name, "parameters": {
        "type": "object", "properties": props or {}, "required": list(required)}}}


@pytest.fixture
def counter_env_kwargs(tmp_path):
    """gym.make kwargs for a one-trajectory env over CounterAPI (bump, then a closing message)."""
    path = tmp_path / "counter_api.py"
    path.write_text(HANG_BACKEND)
    traj = {
        "id": "counter_0", "domain": "tooluse",
        "task": {"involved_classes": ["CounterAPI"], "initial_config": {"CounterAPI": {"count": 3}},
                 "long_context": False, "user_turns": [[{"role": "user", "content": "bump by 2"}]],
                 "ground_truth": [[["bump", {"by": 2}]]], "holdout": {}, "turn_of_step": [0, 0],
                 "message_turns": {"1": "close"}, "defaults": {"bump": {"by": 1}}},
        "tools": [_tool("bump", {"by": {"type": "integer", "default": 1}}), _tool("boom"), _tool("hang")],
        "messages": [
            {"role": "system", "content": "use tools"}, {"role": "user", "content": "bump by 2"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "c0", "type": "function", "function": {"name": "bump", "arguments": json.dumps({"by": 2})}}]},
            {"role": "tool", "tool_call_id": "c0", "name": "bump", "content": json.dumps({"count": 5})},
            {"role": "assistant", "content": "Done, the counter is 5."}],
    }
    return {"trajectories": [traj], "extra_backends": {"CounterAPI": str(path)}, "call_timeout_s": 3.0}
