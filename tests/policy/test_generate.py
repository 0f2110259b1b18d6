"""Sampling: token ids and log-probs agree with scoring, stopping, seeding."""

from __future__ import annotations

import pytest
import torch

from pivot_algo.policy.errors import PolicyError
from pivot_algo.policy.synthetic import random_conversation, terminal_conversation


def _prompts(policy):
    m1, t1 = terminal_conversation(300, seed=1)
    m2, t2 = random_conversation(3)
    m2 = m2[: max(i for i, m in enumerate(m2) if m["role"] == "assistant")]
    return [policy.prompt_ids(m1, t1), policy.prompt_ids(m2, t2)]


def test_generate_logprobs_match_group_logprobs(tiny_policy):
    prompts = _prompts(tiny_policy)
    assert len(prompts[0]) != len(prompts[1])  # exercises the left-padded merged cache
    out = tiny_policy.generate(prompts, 4, max_new_tokens=12, temperature=1.0, seed=3)
    assert [len(g) for g in out] == [4, 4]
    for prompt, group in zip(prompts, out):
        for c in group:
            assert len(c.token_ids) == len(c.logprobs) >= 1
            assert c.text == tiny_policy.decode(c.token_ids)
        with torch.no_grad():
            scored = tiny_policy.group_logprobs(prompt, [c.token_ids for c in group])
        for i, c in enumerate(group):
            torch.testing.assert_close(scored.logprobs[i, : len(c.token_ids)], torch.tensor(c.logprobs),
                                       atol=1e-4, rtol=0)


def test_generate_logprobs_follow_the_temperature(tiny_policy):
    prompt = _prompts(tiny_policy)[:1]
    out = tiny_policy.generate(prompt, 3, max_new_tokens=6, temperature=0.5, seed=0)[0]
    with torch.no_grad():
        scored = tiny_policy.group_logprobs(prompt[0], [c.token_ids for c in out], temperature=0.5)
    for i, c in enumerate(out):
        torch.testing.assert_close(scored.logprobs[i, : len(c.token_ids)], torch.tensor(c.logprobs), atol=1e-4, rtol=0)


def test_seed_reproducibility(tiny_policy):
    """Same seed, same prefix-cache state -> identical samples and log-probs. The cache is cleared before
    each call: a prompt prefilled from a cached prefix is computed in other matrix shapes than a cold one,
    so its log-probs may differ in the last float digits (run alone, the first call was cold and the
    second warm: the 7th digit differed)."""
    prompts = _prompts(tiny_policy)

    def sample(seed: int):
        tiny_policy.clear_prefix_cache()
        return tiny_policy.generate(prompts, 3, max_new_tokens=10, seed=seed)

    a, b, c = sample(11), sample(11), sample(12)
    ids = lambda r: [[x.token_ids for x in g] for g in r]
    assert ids(a) == ids(b)
    assert ids(a) != ids(c)
    assert [[x.logprobs for x in g] for g in a] == [[x.logprobs for x in g] for g in b]


def test_stops_at_end_of_turn(tiny_policy):
    """Make <|im_end|> overwhelmingly likely after one token, then check the cut and finish reasons."""
    model = tiny_policy.model
    head = model.get_output_embeddings()
    prompt = _prompts(tiny_policy)[0]
    saved = head.weight.detach().clone()
    try:
        with torch.no_grad():
            head.weight[tiny_policy.end_of_turn_id] *= 0  # start from a neutral logit ...
            bias = torch.zeros(head.weight.shape[0])
        # ... and add a large logit for <|im_end|> through a forward hook (the head has no bias)
        bias[tiny_policy.end_of_turn_id] = 50.0
        handle = head.register_forward_hook(lambda mod, inp, out: out + bias)
        try:
            out = tiny_policy.generate([prompt], 4, max_new_tokens=8, seed=0)[0]
        finally:
            handle.remove()
    finally:
        with torch.no_grad():
            head.weight.copy_(saved)
    for c in out:
        assert c.finish_reason == "stop"
        assert c.token_ids == [tiny_policy.end_of_turn_id]
        assert c.text == ""
    free = tiny_policy.generate([prompt], 2, max_new_tokens=5, seed=0)[0]
    for c in free:  # the untrained model rarely ends a turn in 5 tokens; if it did, the cut must be at im_end
        if c.finish_reason == "length":
            assert len(c.token_ids) == 5 and tiny_policy.end_of_turn_id not in c.token_ids
        else:
            assert c.token_ids[-1] == tiny_policy.end_of_turn_id


def test_greedy_is_deterministic_and_has_zero_logprobs(tiny_policy):
    prompt = _prompts(tiny_policy)[:1]
    a = tiny_policy.generate(prompt, 2, max_new_tokens=6, temperature=0.0)[0]
    assert a[0].token_ids == a[1].token_ids
    assert all(lp == 0.0 for lp in a[0].logprobs)


def test_top_p_restricts_and_renormalises(tiny_policy):
    prompt = _prompts(tiny_policy)[:1]
    out = tiny_policy.generate(prompt, 4, max_new_tokens=6, top_p=0.05, seed=0)[0]
    with torch.no_grad():
        full = tiny_policy.group_logprobs(prompt[0], [c.token_ids for c in out])
    for i, c in enumerate(out):
        # the nucleus is smaller than the full distribution, so sampling log-probs are higher
        assert all(s >= f - 1e-5 for s, f in zip(c.logprobs, full.logprobs[i].tolist()))


@pytest.mark.parametrize("kwargs, match", [
    ({"n": 0, "max_new_tokens": 4}, "n >= 1"),
    ({"n": 1, "max_new_tokens": 4, "top_p": 0.0}, "top_p"),
    ({"n": 1, "max_new_tokens": 4, "temperature": -1.0}, "temperature"),
])
def test_bad_arguments_raise(tiny_policy, kwargs, match):
    with pytest.raises(PolicyError, match=match):
        tiny_policy.generate([[1, 2, 3]], **kwargs)


@pytest.mark.smollm
def test_smollm_generate_matches_scoring(smollm_policy):
    messages, tools = terminal_conversation(400, seed=2)
    prompt = smollm_policy.prompt_ids(messages, tools)
    out = smollm_policy.generate([prompt], 2, max_new_tokens=8, seed=0)[0]
    with torch.no_grad():
        scored = smollm_policy.group_logprobs(prompt, [c.token_ids for c in out])
    for i, c in enumerate(out):
        torch.testing.assert_close(scored.logprobs[i, : len(c.token_ids)], torch.tensor(c.logprobs), atol=2e-3, rtol=0)


def test_chunked_generation_matches_its_scoring(tiny_policy):
    """A tiny max_batch_tokens forces one prompt per decode batch; samples stay consistent."""
    prompts = _prompts(tiny_policy)
    out = tiny_policy.generate(prompts, 2, max_new_tokens=5, seed=1, max_batch_tokens=1)
    assert [len(g) for g in out] == [2, 2]
    for prompt, group in zip(prompts, out):
        with torch.no_grad():
            scored = tiny_policy.group_logprobs(prompt, [c.token_ids for c in group])
        for i, c in enumerate(group):
            torch.testing.assert_close(scored.logprobs[i, : len(c.token_ids)], torch.tensor(c.logprobs),
                                       atol=1e-4, rtol=0)
