"""The tool-aware chat template: rendering format and the prefix-tokenization property."""

from __future__ import annotations

import json

import pytest

from pivot_algo.policy.chat_template import normalize_messages
from pivot_algo.policy.errors import ChatTemplateError
from pivot_algo.policy.synthetic import BASH_TOOL, random_conversation

CALL_LS = {"id": "c1", "type": "function", "function": {"name": "bash", "arguments": {"command": "ls"}}}


def _check_prefix_property(policy, messages, tools):
    """For every assistant turn k: prompt_ids(messages[:idx_k]) is a prefix of the ONE tokenization of
    the whole conversation, and completion_ids are exactly the tokens that follow, through <|im_end|>."""
    tok = policy.tokenizer
    whole = tok.encode(policy.render(messages, tools), add_special_tokens=False)
    turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    assert turns
    for idx in turns:
        prompt = policy.prompt_ids(messages[:idx], tools)
        completion = policy.completion_ids(messages[:idx], messages[idx], tools)
        assert whole[: len(prompt)] == prompt, f"turn at messages[{idx}]: prompt is not a prefix"
        assert whole[len(prompt): len(prompt) + len(completion)] == completion
        assert completion[-1] == policy.end_of_turn_id
        assert policy.end_of_turn_id not in completion[:-1]


@pytest.mark.parametrize("seed", range(150))
def test_prefix_property_tiny(tiny_policy, seed):
    messages, tools = random_conversation(seed)
    _check_prefix_property(tiny_policy, messages, tools)


@pytest.mark.smollm
@pytest.mark.parametrize("seed", range(40))
def test_prefix_property_smollm(smollm_policy, seed):
    messages, tools = random_conversation(seed)
    _check_prefix_property(smollm_policy, messages, tools)


def test_tool_call_rendering_is_the_hermes_format(tiny_policy):
    messages = [{"role": "user", "content": "list"}, {"role": "assistant", "content": None, "tool_calls": [CALL_LS]}]
    text = tiny_policy.render(messages, [BASH_TOOL])
    expected_call = '<tool_call>\n{"name": "bash", "arguments": {"command": "ls"}}\n</tool_call>'
    assert text.endswith("<|im_start|>assistant\n" + expected_call + "<|im_end|>\n")
    # the tools are in the system message, one JSON schema per line inside <tools>
    assert text.startswith("<|im_start|>system\n")
    assert "<tools>\n" + json.dumps(BASH_TOOL, ensure_ascii=False) + "\n</tools>" in text
    # decoding the completion keeps the markup the Hermes parser reads
    completion = tiny_policy.completion_ids(messages[:1], messages[1], [BASH_TOOL])
    assert tiny_policy.decode(completion) == expected_call


def test_content_then_several_calls_and_non_ascii(tiny_policy):
    calls = [CALL_LS, {"function": {"name": "bash", "arguments": '{"command":"echo héllo"}'}}]
    messages = [{"role": "user", "content": "go"}, {"role": "assistant", "content": "  Running. ", "tool_calls": calls}]
    text = tiny_policy.render(messages)
    assert ('<|im_start|>assistant\nRunning.\n<tool_call>\n{"name": "bash", "arguments": {"command": "ls"}}\n'
            '</tool_call>\n<tool_call>\n{"name": "bash", "arguments": {"command": "echo héllo"}}\n</tool_call><|im_end|>\n'
            ) in text


def test_string_and_dict_arguments_render_identically(tiny_policy):
    as_dict = [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [CALL_LS]}]
    as_str = [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "bash", "arguments": '{"command":"ls"}'}}]}]
    assert tiny_policy.render(as_dict) == tiny_policy.render(as_str)


def test_undecodable_arguments_are_kept_verbatim(tiny_policy):
    messages = [{"role": "user", "content": "x"},
                {"role": "assistant", "tool_calls": [{"function": {"name": "bash", "arguments": "{not json"}}]}]
    assert '{"name": "bash", "arguments": {not json}' in tiny_policy.render(messages)


def test_consecutive_tool_messages_form_one_user_turn(tiny_policy):
    messages = [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [CALL_LS, CALL_LS]},
                {"role": "tool", "content": "a"}, {"role": "tool", "content": "b"}]
    text = tiny_policy.render(messages, add_generation_prompt=True)
    assert text.endswith("<|im_start|>user\n<tool_response>\na\n</tool_response>\n<tool_response>\nb\n"
                         "</tool_response><|im_end|>\n<|im_start|>assistant\n")


def test_no_tools_no_system_is_plain_chatml(tiny_policy):
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    assert tiny_policy.render(messages) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nhello<|im_end|>\n"
    assert tiny_policy.render(messages[:1], add_generation_prompt=True).endswith("hi<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.parametrize("bad, match", [
    ([{"role": "robot", "content": "x"}], "role 'robot'"),
    ([{"role": "user", "content": "x"}, {"role": "system", "content": "late"}], "only messages\\[0\\]"),
    ([{"content": "x"}], "needs? .*role|with a 'role'"),
    ([{"role": "assistant", "tool_calls": [{"function": {"arguments": "{}"}}]}], "function name"),
])
def test_bad_messages_raise_typed_errors(bad, match):
    with pytest.raises(ChatTemplateError, match=match):
        normalize_messages(bad)


def test_completion_must_be_an_assistant_message(tiny_policy):
    with pytest.raises(ChatTemplateError, match="assistant message"):
        tiny_policy.completion_ids([{"role": "user", "content": "x"}], {"role": "user", "content": "y"})
