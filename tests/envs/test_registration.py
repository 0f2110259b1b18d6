"""Verifier dispatch is data: every domain's `ENV_SPEC.verifiers` names factories that build the named
verifier; an unknown name is a typed error listing the domain's names; `judge_actions` hands back the
actions it parsed."""

from __future__ import annotations

import gymnasium as gym
import pytest

import pivot_envs  # noqa: F401  (registers the envs)
from pivot_envs.errors import UnknownVerifierError
from pivot_envs.parsing import parse_action
from pivot_envs.registration import EnvSpec, env_specs, load_object

FACTORIES = [pytest.param(spec, name, id=f"{spec.id}-{name}") for spec in env_specs() for name in spec.verifiers]


@pytest.mark.parametrize(("spec", "name"), FACTORIES)
def test_every_declared_verifier_factory_resolves(spec, name):
    factory = load_object(spec.verifiers[name])
    assert callable(factory)
    assert getattr(factory, "__self__", None) is not None, "a verifier class's for_env classmethod"
    assert factory.__self__.name == name  # the class the name points at is that verifier


@pytest.mark.parametrize("name", ["functional", "canonical", "paper", "exact", "execution"])
def test_tooluse_builds_each_verifier_by_name(name):
    env = gym.make("PivotToolUse-v0", verifier=name, message_policy="any")
    assert env.unwrapped.verifier.name == name
    assert env.unwrapped.verifier.message_policy == "any"


@pytest.mark.parametrize(("spec", "names"), [(s, list(s.verifiers)) for s in env_specs()], ids=lambda v: getattr(v, "id", ""))
def test_unknown_verifier_is_a_typed_error_listing_the_domains_names(spec, names):
    with pytest.raises(UnknownVerifierError) as err:
        spec.build_verifier(object(), "nope")
    assert isinstance(err.value, ValueError)
    assert spec.id in str(err.value) and all(n in str(err.value) for n in names)


def test_unknown_verifier_from_gym_make():
    with pytest.raises(UnknownVerifierError, match=r"PivotToolUse-v0 has no verifier 'exactly'.*functional, canonical"):
        gym.make("PivotToolUse-v0", verifier="exactly")


def test_an_object_with_judge_is_the_verifier():
    class Always:
        name = "always"

        def judge(self, state, action, reference):
            raise AssertionError("not called here")

    v = Always()
    assert env_specs()[0].build_verifier(None, v) is v


def test_spec_rejects_a_missing_domain_or_a_factory_that_is_not_a_path():
    with pytest.raises(ValueError, match="domain"):
        EnvSpec(id="X-v0", entry_point="m:C")
    with pytest.raises(ValueError, match="module:callable"):
        EnvSpec(id="X-v0", entry_point="m:C", domain="x", verifiers={"exact": "no_colon"})


def test_judge_actions_returns_the_parsed_actions_with_the_verdicts():
    env = gym.make("PivotToolUse-v0", trajectory=0, reset_to_turn=0)
    _, info = env.reset()
    tools = env.unwrapped.tools_at(env.unwrapped._state)
    texts = [info["reference"], "<tool_call>{not json</tool_call>", "Sure."]
    judged = env.unwrapped.judge_actions(texts)
    assert [v.reward for v in judged] == [judged[i].reward for i in range(3)] and len(judged) == 3
    assert judged[0].reward == 1.0 and judged[1].reward == 0.0
    assert judged.actions == [parse_action(t, "hermes", tools) for t in texts]
    assert judged.actions[1].error is not None and judged.actions[2].is_message
    _, _, _, _, step_info = env.step(texts[2])
    assert step_info["action"] == judged.actions[2]
