"""A domain registered from outside the package: a temp folder on the path holds a module and a
`*.dist-info` whose `entry_points.txt` names it in the `pivotrl.domains` group (what `pip install` of a
plugin writes). Nothing in pivot_envs is edited, yet in a fresh process gym.make, trajectory loading,
verifier dispatch, the env contract check and `validate` all know the new domain. A subprocess each
(~2 s): the registry is read once per process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pivot_envs

REPO = Path(pivot_envs.__file__).resolve().parents[1]

TOY_INIT = '''
"""A toy domain: the agent says the next number; `number` judges by value, `exact` is the shared rule."""
from pivot_envs.registration import EnvSpec

ENV_SPEC = EnvSpec(id="PivotToy-v0", entry_point="toy_domain.env:ToyEnv", domain="toy",
                   verifiers={"number": "toy_domain.env:NumberVerifier.for_env",
                              "exact": "pivot_envs.verifiers:ExactVerifier.for_env"},
                   check_kwargs={"trajectory": 0, "reset_to_turn": 1})
'''

TOY_ENV = '''
from pivot_envs.base_env import PivotEnv
from pivot_envs.verdict import NoSettings, Verdict


class NumberVerifier(NoSettings):
    name = "number"

    def judge(self, state, action, reference):
        try:
            same = int(action.content) == int(reference["content"])
        except ValueError:
            return Verdict.wrong("not a number", self.name)
        return (Verdict.correct if same else Verdict.wrong)("by value", self.name)


class ToyEnv(PivotEnv):
    domain = "toy"

    def __init__(self, trajectories=None, *, verifier="number", **kwargs):
        super().__init__(trajectories, **kwargs)
        self.verifier = ENV_SPEC.build_verifier(self, verifier)

    def default_trajectories(self):
        return [trajectory("count-0", 3)]

    def load_state(self, traj, k):
        return k

    def state_key(self, state):
        return str(state)

    def judge(self, state, action, reference):
        return self.verifier.judge(state, action, reference)

    def execute(self, state, action):
        return []

    def episode_reward(self, state):
        return 0.0, {}


def trajectory(tid, n):
    messages = []
    for i in range(1, n + 1):
        messages += [{"role": "user", "content": "next"}, {"role": "assistant", "content": str(i)}]
    return {"id": tid, "domain": "toy", "task": {}, "tools": [], "messages": messages}


from toy_domain import ENV_SPEC  # noqa: E402
'''

PROBE = '''
import json, gymnasium as gym, pivot_envs
from gymnasium.utils.env_checker import check_env
from pivot_envs.errors import TrajectoryError, UnknownVerifierError
from pivot_envs.trajectory import DOMAINS, load_trajectories
from pivot_envs.validate import env_id_of
from toy_domain.env import trajectory

out = {"ids": list(pivot_envs.ENV_IDS), "domains": list(DOMAINS), "env_id": env_id_of("toy")}
out["loaded"] = [t.domain for t in load_trajectories([trajectory("a", 2), trajectory("b", 3)])]
try:
    load_trajectories([dict(trajectory("c", 1), domain="toys")])
except TrajectoryError as e:
    out["bad_domain"] = str(e)
for name in ("number", "exact"):
    env = gym.make("PivotToy-v0", verifier=name, reset_to_turn=1, trajectory=0)
    env.reset()
    out[name] = [v.reward for v in env.unwrapped.judge_actions(["2", "02", " 2 ", "3"])]
    check_env(env.unwrapped, skip_render_check=True)
try:
    gym.make("PivotToy-v0", verifier="nope")
except UnknownVerifierError as e:
    out["unknown"] = str(e)
print(json.dumps(out))
'''


def _plugin(tmp: Path, entry_point: str = "toy = toy_domain:ENV_SPEC") -> dict[str, str]:
    pkg = tmp / "toy_domain"
    pkg.mkdir(exist_ok=True)
    (pkg / "__init__.py").write_text(textwrap.dedent(TOY_INIT))
    (pkg / "env.py").write_text(textwrap.dedent(TOY_ENV))
    dist = tmp / "toy_domain-0.1.dist-info"
    dist.mkdir(exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-domain\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[pivotrl.domains]\n{entry_point}\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp), str(REPO)])}


def _run(env: dict[str, str], code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=False)


def test_a_domain_registered_through_an_entry_point_works_everywhere(tmp_path):
    res = _run(_plugin(tmp_path), PROBE)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["ids"] == ["PivotTerminal-v0", "PivotToolUse-v0", "PivotSWE-v0", "PivotToy-v0"]
    assert out["domains"] == ["terminal", "tooluse", "swe", "toy"] and out["env_id"] == "PivotToy-v0"
    assert out["loaded"] == ["toy", "toy"]
    assert "unknown domain 'toys'" in out["bad_domain"] and "'toy'" in out["bad_domain"]
    assert out["number"] == [1.0, 1.0, 1.0, 0.0]  # by value
    assert out["exact"] == [1.0, 0.0, 1.0, 0.0]  # the shared rule: whitespace-normalised text
    assert "PivotToy-v0 has no verifier 'nope'; its verifiers: number, exact" in out["unknown"]


def test_without_the_entry_point_the_domain_is_unknown(tmp_path):
    env = _plugin(tmp_path, entry_point="")
    res = _run(env, "from pivot_envs.trajectory import DOMAINS; print(list(DOMAINS))")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "['terminal', 'tooluse', 'swe']"


def test_a_broken_or_clashing_entry_point_is_a_typed_error_naming_it(tmp_path):
    for entry_point, says in (("toy = toy_domain:NO_SUCH", "entry point toy = 'toy_domain:NO_SUCH'"),
                              ("toy = pivot_envs.domains.swe:ENV_SPEC", "clashes with the registered PivotSWE-v0")):
        res = _run(_plugin(tmp_path, entry_point), "import pivot_envs")
        assert res.returncode != 0 and "DomainRegistrationError" in res.stderr and says in res.stderr, res.stderr
