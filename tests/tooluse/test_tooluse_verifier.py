"""Tool-use verifiers: tables and hypothesis properties on real BFCL tool schemas, and the five named
verifiers judged at real BFCL states."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pivot_envs  # noqa: F401 - registers the envs
from pivot_envs.domains.tooluse.messages import MessageTurn, judge_message
from pivot_envs.domains.tooluse.verifier import compare_canonical
from pivot_envs.verifiers.rules import paper_calls_match, paper_value_match

# real schemas (GorillaFileSystem / MathAPI / TwitterAPI docs as converted)
TOOLS = {
    "tail": {"type": "function", "function": {"name": "tail", "parameters": {"type": "object", "properties": {
        "file_name": {"type": "string"}, "lines": {"type": "integer", "default": 10}}, "required": ["file_name"]}}},
    "power": {"type": "function", "function": {"name": "power", "parameters": {"type": "object", "properties": {
        "base": {"type": "number"}, "exponent": {"type": "number"}}, "required": ["base", "exponent"]}}},
    "ls": {"type": "function", "function": {"name": "ls", "parameters": {"type": "object", "properties": {
        "a": {"type": "boolean", "default": False}}, "required": []}}},
    "post_tweet": {"type": "function", "function": {"name": "post_tweet", "parameters": {"type": "object", "properties": {
        "content": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}, "default": []},
        "mentions": {"type": "array", "items": {"type": "string"}, "default": []}}, "required": ["content"]}}},
}
DEFAULTS = {"tail": {"lines": 10}, "ls": {"a": False}, "post_tweet": {"tags": [], "mentions": []}}


def same(a, b):
    return compare_canonical(a, b, TOOLS, DEFAULTS)


@pytest.mark.parametrize("sampled, reference, expected", [
    ([("tail", {"file_name": "a.txt", "lines": 10})], [("tail", {"file_name": "a.txt"})], True),   # explicit default
    ([("tail", {"file_name": "a.txt", "lines": 10.0})], [("tail", {"file_name": "a.txt"})], True),  # integral float
    ([("tail", {"file_name": "a.txt", "lines": "20"})], [("tail", {"file_name": "a.txt", "lines": 20})], True),
    ([("tail", {"file_name": "a.txt", "lines": 20.5})], [("tail", {"file_name": "a.txt", "lines": 20})], False),
    ([("power", {"base": 2, "exponent": 3})], [("power", {"exponent": 3.0, "base": 2.0})], True),
    ([("power", {"base": "2.0", "exponent": 3})], [("power", {"exponent": 3.0, "base": 2.0})], True),
    ([("power", {"base": True, "exponent": 3})], [("power", {"exponent": 3.0, "base": 1.0})], False),  # bool is no number
    ([("ls", {"a": "true"})], [("ls", {"a": True})], True),
    ([("ls", {})], [("ls", {"a": True})], False),
    ([("tail", {"file_name": "a.txt"}), ("ls", {})], [("ls", {"a": False}), ("tail", {"file_name": "a.txt"})], True),
    ([("tail", {"file_name": "a.txt"})], [("ls", {})], False),
    ([("tail", {"file_name": "a.txt"}), ("ls", {})], [("ls", {})], False),
    ([("tail", {})], [("tail", {"file_name": "a.txt"})], False),
    ([("tail", {"file_name": "a.txt", "extra": 1})], [("tail", {"file_name": "a.txt"})], False),
    ([("post_tweet", {"content": "hi", "tags": []})], [("post_tweet", {"content": "hi"})], True),
    ([("post_tweet", {"content": 5})], [("post_tweet", {"content": "5"})], False),  # nothing coerced to string
])
def test_canonical_table(sampled, reference, expected):
    ok, reason = same(sampled, reference)
    assert ok is expected, reason
    assert reason


names = st.text(alphabet="abcdefghij._ ", min_size=1, max_size=12)
ints = st.integers(min_value=-10**6, max_value=10**6)


@settings(max_examples=200, deadline=None)
@given(file_name=names, lines=ints, order=st.booleans())
def test_property_reordered_and_coerced_kwargs_are_equivalent(file_name, lines, order):
    ref = [("tail", {"file_name": file_name, "lines": lines})]
    args = {"lines": float(lines), "file_name": file_name} if order else {"lines": str(lines), "file_name": file_name}
    assert same([("tail", args)], ref)[0]


@settings(max_examples=200, deadline=None)
@given(base=ints, exponent=st.floats(min_value=-50, max_value=50, allow_nan=False))
def test_property_int_float_for_number_params(base, exponent):
    assert same([("power", {"base": base, "exponent": exponent})], [("power", {"exponent": exponent, "base": float(base)})])[0]
    assert same([("power", {"base": str(base), "exponent": exponent})], [("power", {"exponent": exponent, "base": float(base)})])[0]


@settings(max_examples=200, deadline=None)
@given(file_name=names, lines=ints, delta=st.integers(min_value=1, max_value=1000))
def test_property_changed_value_missing_arg_extra_call_wrong_function(file_name, lines, delta):
    ref = [("tail", {"file_name": file_name, "lines": lines})]
    assert not same([("tail", {"file_name": file_name, "lines": lines + delta})], ref)[0]
    assert not same([("tail", {"file_name": file_name + "x", "lines": lines})], ref)[0]
    assert not same([("tail", {"lines": lines})], ref)[0]
    assert not same(ref + [("ls", {})], ref)[0]
    assert not same([("ls", {})], ref)[0]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(content=st.text(min_size=1, max_size=30), tags=st.lists(st.text(min_size=1, max_size=5), max_size=3))
def test_property_explicit_defaults_equal_omitted(content, tags):
    ref = [("post_tweet", {"content": content, "tags": tags})]
    assert same([("post_tweet", {"content": content, "tags": tags, "mentions": []})], ref)[0]
    if not tags:
        assert same([("post_tweet", {"content": content})], ref)[0]


_CLOSE = MessageTurn("close", "move the report", (("mv", {"source": "report.pdf", "destination": "temp"}),),
                     ('{"result": "\'report.pdf\' moved to \'temp/report.pdf\'"}',))
_CLARIFY = MessageTurn("clarify", "sort it", missing_functions=("sort",), tools=(
    {"type": "function", "function": {"name": "sort", "description": "Sort the contents of a file line by line.",
                                      "parameters": {"type": "object", "properties": {}}}},))
_REF = "Done. I called mv(source=\"report.pdf\", destination=\"temp\"). The last result was: 'report.pdf' moved"


@pytest.mark.parametrize("text, turn, policy, ok", [
    ("Which function should sort the file?", _CLARIFY, "content", True),
    ("I cannot do that: no function sorts files.", _CLARIFY, "content", True),
    ("Which directory do you mean?", _CLARIFY, "content", False),   # asks, but not for what is missing
    ("Could you clarify?", _CLARIFY, "content", False),
    ("Done.", _CLARIFY, "content", False),
    ("", _CLOSE, "content", False),
    ("Done, report.pdf is in temp.", _CLOSE, "content", True),
    ("Done, the file is in temp.", _CLOSE, "content", False),       # reports no value of the output
    ("I am unable to do this with report.pdf.", _CLOSE, "content", False),
    ("ok", _CLOSE, "content", False),
    ("Done.", _CLARIFY, "any", True),
])
def test_message_policy_table(text, turn, policy, ok):
    assert judge_message(text, turn, policy, _REF)[0] is ok


@pytest.mark.parametrize("expected, actual, ok", [
    ({"a": 1.0}, {"a": 1.0000001}, True),
    ({"a": 1.0}, {"a": 1.01}, False),
    ({"a": "x"}, {"a": "x", "b": 1}, False),
    ([1, 2], [1, 2, 3], False),
    ("hello", "Hello", False),                           # < 2 words: exact
    ("the quick brown fox", "a quick red fox", True),    # 2 common / 8 words = 0.25 >= 0.1
    ("the quick brown fox", "totally other words here", False),
    ("the quick brown fox", "the quick brown fox", True),  # identical: 0.5 (paper's maximum)
])
def test_paper_value_match_table(expected, actual, ok):
    assert paper_value_match(expected, actual) is ok


def test_paper_calls_batch_matching():
    a, b = ("cd", {"folder": "x"}), ("ls", {"a": True})
    assert paper_calls_match([b, a], [a, b])
    assert not paper_calls_match([a], [a, b])


# ----------------------------------------------------------------------------- at real BFCL states

def call(name, **args):
    return f"<tool_call>{json.dumps({'name': name, 'arguments': args})}</tool_call>"


@pytest.fixture(scope="module")
def envs(bfcl_suite):
    made = {v: gym.make("PivotToolUse-v0", trajectories=bfcl_suite[:3], verifier=v)
            for v in ("functional", "canonical", "execution", "paper", "exact")}
    yield made
    for e in made.values():
        e.close()


def judge(env, tid, k, action):
    env.reset(options={"trajectory": tid, "turn": k})
    _, r, _, _, info = env.step(action)
    return r, info


# multi_turn_base_0 turn 0: reference cd(folder='document'); turn 3: closing message
@pytest.mark.parametrize("verifier, k, action, reward, method", [
    ("functional", 0, call("cd", folder="document"), 1.0, "canonical"),
    ("functional", 0, call("cd", folder="documents"), 0.0, "execution"),
    ("canonical", 0, call("cd", folder="document"), 1.0, "canonical"),
    ("execution", 0, call("cd", folder="document"), 1.0, "execution"),
    ("paper", 0, call("cd", folder="document"), 1.0, "paper"),
    ("exact", 0, call("cd", folder="document"), 1.0, "exact"),
    ("functional", 3, "Done: final_report.pdf is now in document/temp.", 1.0, "message"),
    ("functional", 3, "I cannot do that.", 0.0, "message"),
    ("functional", 3, "ok", 0.0, "message"),                 # issue 8: these three scored 1
    ("functional", 3, "Sure.", 0.0, "message"),
    ("functional", 3, "The weather is nice today.", 0.0, "message"),
    ("paper", 3, "I cannot do that.", 1.0, "message"),        # the paper's "any message" rule
    ("exact", 3, "Done.", 0.0, "exact"),
    ("functional", 3, call("ls"), 0.0, "functional"),
    ("functional", 0, "Sure, I will move it.", 0.0, "functional"),
])
def test_named_verifiers_at_a_real_state(envs, verifier, k, action, reward, method):
    r, info = judge(envs[verifier], "multi_turn_base_0", k, action)
    assert r == reward, info["reason"]
    assert info["verdict"].method == method and info["reason"] and not info["masked"]


def test_execution_accepts_a_different_spelling_with_the_same_effect(envs, bfcl_suite):
    """ls() at turn k vs ls(a=False) is canonical; find(path='.') vs find() executes to the same state/output."""
    env = envs["execution"]
    for tid in (t.id for t in bfcl_suite[:3]):
        traj = env.unwrapped.trajectories[env.unwrapped.trajectory_index(tid)]
        for k in range(traj.num_turns):
            ref = traj.reference(k)
            if ref.get("tool_calls") and ref["tool_calls"][0]["function"]["name"] == "ls":
                args = json.loads(ref["tool_calls"][0]["function"]["arguments"])
                args.setdefault("a", False)
                r, info = judge(env, tid, k, call("ls", **args))
                assert r == 1.0, info["reason"]
                return
    pytest.fail("no ls reference in the first trajectories: the test data changed")


@pytest.mark.parametrize("action, reason_part", [
    ('<tool_call>{"name": "cd", "arguments": {folder: x}}</tool_call>', "not valid JSON"),
    (call("rm_rf_everything", path="/"), "unknown tool"),
    (call("cd", folder=["a", "b"]), "canonical"),            # wrong type: a list for a string
    (call("cd"), "canonical"),                               # missing required argument -> backend raises
    (call("cat", file_name="no_such_file.txt"), "execution"),  # the backend call raises: an output
    ('<tool_call>{"name": "cd"', "not closed"),
    ({"role": "assistant", "tool_calls": [{"function": {"name": "cd", "arguments": "{oops"}}]}, "not a JSON object"),
])
def test_bad_input_is_a_reward_0_verdict(envs, action, reason_part):
    env = envs["functional"]
    r, info = judge(env, "multi_turn_base_0", 0, action)
    assert r == 0.0 and not info["masked"]
    assert reason_part in info["reason"]
    r, info = judge(env, "multi_turn_base_0", 0, info["reference"])  # the next reset is clean
    assert r == 1.0
