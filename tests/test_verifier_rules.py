"""pivot_envs/verifiers/rules.py: the one exact-match rule (the strict-match ablation) and the paper's
rules, as tables; and every domain's "exact" verifier is that rule (same verdict on the same pair)."""

from __future__ import annotations

import pytest

from pivot_envs.parsing import parse_action
from pivot_envs.verifiers import ExactVerifier, exact_match, normalise_text
from pivot_envs.verifiers.rules import paper_calls_match, paper_value_match, similarity

BASH = [{"type": "function", "function": {"name": "bash", "parameters": {"type": "object", "properties": {
    "command": {"type": "string"}}, "required": ["command"]}}}]


def _call(name, **arguments):
    return {"role": "assistant", "content": "", "tool_calls": [
        {"id": "c0", "type": "function", "function": {"name": name, "arguments": arguments}}]}


def _hermes(name, **arguments):
    import json
    return f'<tool_call>{json.dumps({"name": name, "arguments": arguments})}</tool_call>'


@pytest.mark.parametrize(("reply", "reference", "reward"), [
    ("Done.", {"role": "assistant", "content": "Done."}, 1),
    ("  Done.\n", {"role": "assistant", "content": "Done."}, 1),            # leading / trailing whitespace
    ("the  answer\tis 4", {"role": "assistant", "content": "the answer is 4"}, 1),  # inner runs of whitespace
    ("done.", {"role": "assistant", "content": "Done."}, 0),                # case matters
    ("", {"role": "assistant", "content": ""}, 0),                          # empty never matches, even empty
    ("   ", {"role": "assistant", "content": ""}, 0),
    (_hermes("bash", command="ls -la"), _call("bash", command="ls -la"), 1),
    (_hermes("bash", command="ls -al"), _call("bash", command="ls -la"), 0),  # no functional credit
    (_hermes("bash", command="ls -la"), {"role": "assistant", "content": "ls -la"}, 0),  # call vs message
    ("ls -la", _call("bash", command="ls -la"), 0),
    ("<tool_call>{not json</tool_call>", _call("bash", command="ls"), 0),   # unparseable
])
def test_exact_match_table(reply, reference, reward):
    assert exact_match(parse_action(reply, "hermes", BASH), reference).reward == reward


def test_argument_key_order_does_not_matter_but_values_do():
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
        "a": {"type": "integer"}, "b": {"type": "integer"}}}}}]
    ref = _call("f", a=1, b=2)
    assert exact_match(parse_action('<tool_call>{"name": "f", "arguments": {"b": 2, "a": 1}}</tool_call>', "hermes", tools),
                       ref).reward == 1
    assert exact_match(parse_action('<tool_call>{"name": "f", "arguments": {"a": 1, "b": 2.0}}</tool_call>', "hermes", tools),
                       ref).reward == 0


def test_the_demonstration_matches_itself_in_every_domain_rule():
    from pivot_algo.algorithms.pivotrl_exact_match import exact_match_judge
    from pivot_envs.domains.terminal.verifier import ExactVerifier as TerminalExact
    from pivot_envs.domains.tooluse.verifier import ExactVerifier as ToolUseExact

    cases = [("Done.", {"role": "assistant", "content": "Done."}), ("", {"role": "assistant", "content": ""}),
             (_hermes("bash", command="ls -la"), _call("bash", command="ls -la")),
             (_hermes("bash", command="ls -al"), _call("bash", command="ls -la")),
             ("done  .", {"role": "assistant", "content": "done ."})]

    class AllowAll:
        allowed = ("bash",)

    for reply, ref in cases:
        action = parse_action(reply, "hermes", BASH)
        want = exact_match(action, ref).reward
        assert TerminalExact().judge(None, action, ref).reward == want
        assert ToolUseExact().judge(AllowAll(), action, ref).reward == want
        assert exact_match_judge([reply], ref, BASH)[0].reward == want


def test_the_exact_match_ablation_hands_its_parsed_actions_to_the_rollout():
    """The ablation's judge parses each sample once and returns the parsed actions with the verdicts,
    so Rollouts counts tool calls and parse failures from them instead of parsing again."""
    from pivot_algo.algorithms.pivotrl_exact_match import exact_match_judge
    from pivot_envs.base_env import Judgements

    replies = [_hermes("bash", command="ls -la"), "not a call", "<tool_call>{broken</tool_call>"]
    judged = exact_match_judge(replies, _call("bash", command="ls -la"), BASH)
    assert isinstance(judged, Judgements)
    assert [v.reward for v in judged] == [1.0, 0.0, 0.0]
    assert judged.actions == [parse_action(r, "hermes", BASH) for r in replies]
    assert [bool(a.tool_calls) for a in judged.actions] == [True, False, False]
    assert judged.actions[2].error is not None


def test_the_miniworld_exact_verifier_is_the_shared_rule():
    from pivot_algo import miniworld

    (task,) = miniworld.tasks("A", "eval", "dev", 1)
    env = miniworld.MiniWorldEnv([task], verifier="exact")
    demo = task["messages"][1]["content"]
    for reply in (demo, f"  {demo} ", demo.replace("x+", "x +"), ""):
        env.reset(options={"trajectory": task["id"], "turn": 0})
        _, reward, *_ = env.step(reply)
        assert reward == exact_match(parse_action(reply, "hermes", []), task["messages"][1]).reward
    env.close()


def test_paper_rules():
    assert similarity("ls -la /tmp", "ls -la /tmp") == 1.0 and similarity("abc", "xyz") == 0.0
    assert normalise_text("  a \n b\t") == "a b"
    assert paper_value_match({"q": "weather in Paris today"}, {"q": "Paris weather today"})
    assert not paper_value_match({"n": 5}, {"n": 5.5})
    assert paper_value_match(1.0, 1.0000001) and not paper_value_match("yes", "Yes")


@pytest.mark.parametrize(("expected", "actual", "match"), [
    ({"a": 1, "b": [1, 2]}, {"b": [1, 2], "a": 1}, True),  # key order free
    ({"a": 1}, {"a": 1, "b": 2}, False),  # same keys required
    ([1, 2], [1, 2, 3], False),  # same lengths required
    ([1, 2], [2, 1], False),  # lists in order
    (0.1 + 0.2, 0.3, True),  # floats within 1e-6
    (5, 5.0, True), (5, "5", False), (True, 1, False),  # a bool is not a number
    ("ls -la", "ls -al", True),  # 2+ words: bag-of-words overlap 1/(2+2) = 0.25 >= 0.1 (the paper's loose rule)
    ("Paris", "paris", False),  # one word: exact
    ("weather in Paris", "Paris forecast", True),  # 1 common / (3 + 2) = 0.2
    ("alpha beta gamma delta eta", "zeta theta", False),  # no common word
], ids=lambda v: repr(v)[:20])
def test_paper_value_match_table(expected, actual, match):
    assert paper_value_match(expected, actual) is match


@pytest.mark.parametrize(("sampled", "reference", "match"), [
    ([("f", {"x": 1})], [("f", {"x": 1})], True),
    ([("f", {"x": 1}), ("g", {})], [("g", {}), ("f", {"x": 1})], True),  # a batch: any one-to-one pairing
    ([("f", {"x": 1})], [("g", {"x": 1})], False),  # names equal
    ([("f", {"x": 1})], [("f", {"x": 1}), ("f", {"x": 1})], False),  # as many calls
    ([], [], True),
    ([("f", {"i": i}) for i in range(8)], [("f", {"i": i}) for i in reversed(range(8))], True),  # greedy past 6
], ids=["same", "reordered", "other-name", "fewer", "none", "eight"])
def test_paper_calls_match_table(sampled, reference, match):
    assert paper_calls_match(sampled, reference) is match


def test_the_shared_exact_verifier_is_the_rule():
    ref = _call("bash", command="ls")
    for reply in (_hermes("bash", command="ls"), _hermes("bash", command="ls -a"), "ls", ""):
        action = parse_action(reply, "hermes", BASH)
        assert ExactVerifier.for_env(None).judge(None, action, ref) == exact_match(action, ref)
