"""Message turns of PivotToolUse-v0 (issue 8 item 6): a constant reply earns nothing, the
demonstration's message earns 1, a reply that reports the turn's values / names what is missing earns 1.
Also: constants at tool-call turns, the strict-match judges, and prompts rendered from the observed tools."""

from __future__ import annotations

import json
import random

import gymnasium as gym
import pytest

import pivot_envs  # noqa: F401 - registers the envs
from benchmarks.constant_messages import (
    CONSTANTS,
    DEMONSTRATION,
    ZERO_SHARE_REQUIRED,
    judge_constants,
    message_turns,
)
from pivot_envs.domains.tooluse.messages import (
    Atom,
    MessageTurn,
    Reply,
    judge_message,
    output_atoms,
    string_atoms,
)

# ----------------------------------------------------------------------------- the rules, as tables


@pytest.mark.parametrize("value, reply, found", [
    (3.14159, "about 3.14", True),
    (3.14159, "about 3", False),               # fewer than 2 decimals of a non-integer value
    (10000.0, "a balance of 10,000 dollars", True),
    (58, "58 characters", True),
    (58, "580 characters", False),
    (2857.14, "limit set to $2857.14", True),
])
def test_number_recall_table(value, reply, found):
    assert output_atoms([json.dumps({"v": value})])[0].found_in(Reply.of(reply)) is found


def test_string_atoms_split_ids_quotes_and_text():
    atoms = string_atoms("Message sent to 'USR008' successfully.")
    assert Atom("phrase", "usr008") in atoms
    assert not any(a.kind == "phrase" and a.text == "successfully" for a in atoms)
    assert string_atoms("running") == [Atom("phrase", "running")]
    assert string_atoms("True") == [] and output_atoms(["None", "true", '{"ok": true}']) == []


CD_MV = (("cd", {"folder": "document"}), ("mv", {"source": "final_report.pdf", "destination": "temp"}))
MV_OUT = ('{"current_working_directory": "document"}',
          '{"result": "\'final_report.pdf\' moved to \'temp/final_report.pdf\'"}')
MV_REF = ('Done. I called cd(folder="document"), mv(source="final_report.pdf", destination="temp"). The last '
          'result was: {"result": "\'final_report.pdf\' moved to \'temp/final_report.pdf\'"}')
TOUCH_REF = 'Done. I called touch(file_name="notes.txt"). The last result was: None'
DOORS_REF = "Done. I called lockDoors(unlock=false). The last result was: None"


@pytest.mark.parametrize("reply, turn, ref, ok, reason_part", [
    ("final_report.pdf is now in document/temp.", MessageTurn("close", "", CD_MV, MV_OUT), MV_REF, True, "recalls"),
    ("I moved the file as asked.", MessageTurn("close", "", CD_MV, MV_OUT), MV_REF, False, "salient values"),
    ("Created notes.txt.", MessageTurn("close", "", (("touch", {"file_name": "notes.txt"}),), ("None",)),
     TOUCH_REF, True, "call arguments"),
    ("Done.", MessageTurn("close", "", (("touch", {"file_name": "notes.txt"}),), ("None",)),
     TOUCH_REF, False, "call arguments"),
    ("All doors are locked.", MessageTurn("close", "", (("lockDoors", {"unlock": False}),), ("None",)),
     DOORS_REF, True, "names what was done"),
    ("Finished.", MessageTurn("close", "", (("lockDoors", {"unlock": False}),), ("None",)),
     DOORS_REF, False, "name one of"),
    ("I cannot move final_report.pdf.", MessageTurn("close", "", CD_MV, MV_OUT), MV_REF, False, "declines"),
    # the result is the last step's output: earlier outputs echoed in the demonstration's call arguments
    # need not be repeated
    ("The average is 93.33.", MessageTurn("close", "", (("get_scores", {}), ("mean", {"numbers": [100, 95, 85]})),
                                          ('{"scores": [100, 95, 85]}', '{"result": 93.33333333333333}'), last_step_outputs=1),
     'Done. I called get_scores(), mean(numbers=[100, 95, 85]). The last result was: {"result": 93.33333333333333}',
     True, "last tool output"),
    # id stuffing: the right value among values the turn never produced is guessing
    ("Done: final_report.pdf, USR001, USR002, AAPL, 12345.", MessageTurn("close", "", CD_MV, MV_OUT), MV_REF,
     False, "never produced"),
    ("Moved final_report.pdf into document/temp (2 files there now).", MessageTurn("close", "", CD_MV, MV_OUT), MV_REF, True, "recalls"),
])
def test_closing_rule_table(reply, turn, ref, ok, reason_part):
    got, why = judge_message(reply, turn, "content", ref)
    assert got is ok and reason_part in why, why


TOOLS = tuple({"type": "function", "function": {"name": n, "description": d, "parameters": {
    "type": "object", "properties": props}}} for n, d, props in [
    ("sort", "This tool belongs to the Gorilla file system. Tool description: Sort the contents of a file line by line.",
     {"file_name": {"type": "string", "description": "The name of the file appeared at current directory to sort."}}),
    ("cat", "This tool belongs to the Gorilla file system. Tool description: Display the contents of a file.",
     {"file_name": {"type": "string", "description": "The name of the file to display."}}),
    ("tail", "This tool belongs to the Gorilla file system. Tool description: Display the last part of a file.",
     {"file_name": {"type": "string", "description": "The name of the file to display."}}),
    ("place_order", "Tool description: Place an order.",
     {"symbol": {"type": "string", "description": "Symbol of the stock to trade."},
      "amount": {"type": "integer", "description": "Amount of shares to trade."}}),
])


@pytest.mark.parametrize("reply, turn, ok", [
    ("There is no function to sort files here; could you add one?", MessageTurn("clarify", "", missing_functions=("sort",), tools=TOOLS), True),
    ("Which file should I display?", MessageTurn("clarify", "", missing_functions=("sort",), tools=TOOLS), False),
    ("Could you clarify?", MessageTurn("clarify", "", missing_functions=("sort",), tools=TOOLS), False),
    ("Which stock should I buy?", MessageTurn("clarify", "", missing_parameters=(("place_order", "symbol"),), tools=TOOLS), True),
    ("What symbol?", MessageTurn("clarify", "", missing_parameters=(("place_order", "symbol"),), tools=TOOLS), True),
    ("How many shares?", MessageTurn("clarify", "", missing_parameters=(("place_order", "symbol"),), tools=TOOLS), False),
    ("The stock is AAPL.", MessageTurn("clarify", "", missing_parameters=(("place_order", "symbol"),), tools=TOOLS), False),
    ("Please provide the missing details.", MessageTurn("clarify", "", missing_parameters=(("place_order", "symbol"),), tools=TOOLS), False),
    # a list of guesses names the missing item among others: 0
    ("Which file, stock, amount, flight or ticket do you mean?",
     MessageTurn("clarify", "", missing_parameters=(("place_order", "symbol"),), tools=TOOLS,
                 vocabulary=frozenset({"fil", "flight", "ticket", "stock", "amount"})), False),
    ("Which stock should I buy, and is the amount right?",
     MessageTurn("clarify", "", missing_parameters=(("place_order", "symbol"),), tools=TOOLS,
                 vocabulary=frozenset({"fil", "flight", "ticket", "stock", "amount"})), True),
    ("I can't send an invoice with these tools.", MessageTurn("clarify", "Send me the invoice for my flight."), True),
    ("Could you clarify?", MessageTurn("clarify", "Send me the invoice for my flight."), False),
])
def test_clarifying_rule_table(reply, turn, ok):
    assert judge_message(reply, turn, "content", "")[0] is ok


# ----------------------------------------------------------------------------- on the BFCL suite

def test_demonstration_message_scores_1_at_every_message_turn(bfcl_suite):
    """All 800 entries, every message turn (3,336), through the env's own MessageTurn."""
    env = gym.make("PivotToolUse-v0", trajectories=bfcl_suite)
    try:
        base, n = env.unwrapped, 0
        for traj in base.trajectories:
            for k, kind in traj.task["message_turns"].items():
                ref = traj.reference(int(k))["content"]
                ok, why = judge_message(ref, base.message_turn_of(traj, int(k)), "content", ref)
                assert ok, (traj.id, k, kind, why, ref)
                n += 1
        assert n == 3336
    finally:
        env.close()


def test_every_clarifying_turn_of_miss_func_and_miss_param_names_a_target(bfcl_suite):
    """The converter finds what is missing: the held-out function (all miss_func turns) or the parameter
    the user supplies next (most miss_param turns; the rest fall back to the request's words)."""
    per_cat = {"multi_turn_miss_func": [0, 0], "multi_turn_miss_param": [0, 0]}
    for traj in bfcl_suite:
        cat = traj.task["category"]
        for targets in traj.task["clarify_targets"].values():
            if cat in per_cat:
                per_cat[cat][0] += 1
                per_cat[cat][1] += bool(targets.get("functions") or targets.get("parameters"))
    # miss_func: 200 turns right before a function is added + 3 that cannot be done at all (as in base)
    assert per_cat["multi_turn_miss_func"] == [203, 200]
    found, total = per_cat["multi_turn_miss_param"][1], per_cat["multi_turn_miss_param"][0]
    assert total == 203 and found >= 165, (found, total)  # measured: 170


def _sample_turns(env, n, seed=0):
    turns = message_turns(env)
    return sorted(random.Random(seed).sample(turns, min(n, len(turns))))


def _assert_95_rule(rewards):
    for c in CONSTANTS:
        scored = [r for r in rewards[c] if r is not None]
        assert scored, c
        zero_share = sum(r == 0 for r in scored) / len(scored)
        assert zero_share >= ZERO_SHARE_REQUIRED, (c, zero_share)
    demo = [r for r in rewards[DEMONSTRATION] if r is not None]
    assert demo and all(r == 1.0 for r in demo)


@pytest.fixture(scope="module")
def functional_env(bfcl_suite):
    env = gym.make("PivotToolUse-v0", trajectories=bfcl_suite)
    yield env
    env.close()


def test_constant_messages_earn_nothing_sample(functional_env):
    """The 95% rule on 150 random message turns (closing and clarifying) of the 800 entries."""
    _assert_95_rule(judge_constants(functional_env, _sample_turns(functional_env, 150)))


@pytest.mark.slow
def test_constant_messages_earn_nothing_all(functional_env):
    turns = message_turns(functional_env)
    assert len(turns) == 3336
    _assert_95_rule(judge_constants(functional_env, turns))


@pytest.mark.parametrize("verifier", ["functional", "canonical", "execution", "paper", "exact"])
def test_empty_and_constant_actions_at_tool_call_turns(bfcl_suite, verifier):
    """A tool-call turn needs a call: empty tool-call lists, empty blocks and constants all score 0."""
    env = gym.make("PivotToolUse-v0", trajectories=bfcl_suite[:2], verifier=verifier)
    try:
        for tid in ("multi_turn_base_0", "multi_turn_base_1"):
            env.reset(options={"trajectory": tid, "turn": 0})
            actions = [*CONSTANTS, {"role": "assistant", "content": "", "tool_calls": []},
                       "<tool_call></tool_call>", "<tool_call>{}</tool_call>"]
            verdicts = env.unwrapped.judge_actions(actions)
            assert all(v.reward == 0 and not v.masked for v in verdicts), [(a, v.reason) for a, v in zip(actions, verdicts)]
    finally:
        env.close()


def test_strict_match_judges_let_no_constant_through(bfcl_suite):
    """The tool-use `exact` verifier and the `pivotrl_exact_match` judge, at message turns whose
    demonstration text is empty too (a user's trajectory may have one): an empty reply scores 0."""
    from pivot_algo.algorithms.pivotrl_exact_match import exact_match_judge
    from pivot_envs.domains.tooluse.verifier import ExactVerifier
    from pivot_envs.parsing import parse_action

    traj = bfcl_suite[0]
    k = int(next(iter(traj.task["message_turns"])))
    ref = traj.reference(k)
    assert all(v.reward == 0 for v in exact_match_judge(list(CONSTANTS), ref, traj.tools))
    env = gym.make("PivotToolUse-v0", trajectories=[traj], verifier="exact")
    try:
        env.reset(options={"trajectory": traj.id, "turn": k})
        assert all(v.reward == 0 for v in env.unwrapped.judge_actions(list(CONSTANTS)))
        state = env.unwrapped._state
        verdict = ExactVerifier().judge(state, parse_action(""), {"role": "assistant", "content": ""})
        assert verdict.reward == 0 and "empty" in verdict.reason
    finally:
        env.close()


# ----------------------------------------------------------------------------- prompts: the observed tools

def test_prompts_render_the_tools_the_env_observes(bfcl_suite):
    """At a miss_func turn before the held-out function is added, the prompt (and the SFT target's
    prefix) must not show it: Rollouts renders obs["tools"], not traj.tools."""
    import torch

    from pivot_algo.policy import load_policy
    from pivot_algo.rollout import Rollouts, StartState

    torch.set_num_threads(1)
    traj = next(t for t in bfcl_suite if t.id == "multi_turn_miss_func_0")
    env = gym.make("PivotToolUse-v0", trajectories=[traj])
    try:
        policy = load_policy("tiny")
        rollouts = Rollouts(policy, env)
        k = 0
        obs, _ = env.reset(options={"trajectory": traj.id, "turn": k})
        held = {n for names in traj.task["holdout"].values() for n in names}
        assert held and held.isdisjoint(t["function"]["name"] for t in obs["tools"])
        state = StartState(traj.id, k)
        assert rollouts.tools(state) == obs["tools"]
        assert rollouts.prompt(state) == policy.prompt_ids(obs["messages"], obs["tools"])
        assert rollouts.prompt(state) != policy.prompt_ids(obs["messages"], traj.tools)
        assert rollouts.demonstration(state)[0] == rollouts.prompt(state)
    finally:
        env.close()
