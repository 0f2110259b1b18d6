"""The shared-prefix step: log-probs and gradients equal the naive per-sequence computation."""

from __future__ import annotations

import pytest
import torch

from pivot_algo.policy.errors import PolicyError
from pivot_algo.policy.synthetic import terminal_conversation


def _group(policy, seed: int = 0, g: int = 5):
    messages, tools = terminal_conversation(600, seed=seed)
    prompt = policy.prompt_ids(messages, tools)
    rng = torch.Generator().manual_seed(seed)
    vocab = len(policy.tokenizer)
    lengths = [1, 7, 13, 2, 20, 9, 4][:g]
    completions = [torch.randint(3, vocab, (n,), generator=rng).tolist() for n in lengths]
    return prompt, completions


def _loss_and_grads(policy, fn, prompt, completions, temperature=1.0):
    policy.model.zero_grad(set_to_none=True)
    out = fn(prompt, completions, temperature=temperature)
    weights = torch.linspace(0.5, 1.5, out.logprobs.numel()).view_as(out.logprobs)  # non-uniform, like advantages
    (out.logprobs * weights * out.mask).sum().backward()
    grads = {n: p.grad.detach().clone() for n, p in policy.model.named_parameters() if p.grad is not None}
    policy.model.zero_grad(set_to_none=True)
    return out, grads


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_shared_prefix_matches_naive_values_and_grads(tiny_policy, temperature):
    prompt, completions = _group(tiny_policy)
    assert len(prompt) > 200  # a real prefix, not a toy one
    shared, g_shared = _loss_and_grads(tiny_policy, tiny_policy.group_logprobs, prompt, completions, temperature)
    naive, g_naive = _loss_and_grads(tiny_policy, tiny_policy.naive_group_logprobs, prompt, completions, temperature)
    assert shared.logprobs.shape == (len(completions), max(map(len, completions)))
    assert torch.equal(shared.mask, naive.mask)
    assert shared.mask.sum().item() == sum(map(len, completions))
    torch.testing.assert_close(shared.logprobs, naive.logprobs, atol=1e-4, rtol=0)
    assert (shared.logprobs[shared.mask == 0] == 0).all()
    assert (shared.logprobs[shared.mask == 1] < 0).all()
    assert set(g_shared) == set(g_naive) and len(g_shared) == len(list(tiny_policy.model.parameters()))
    for name in g_naive:
        a, b = g_shared[name], g_naive[name]
        rel = (a - b).norm() / b.norm().clamp_min(1e-12)
        assert rel < 1e-3, f"gradient of {name} differs: relative error {rel:.2e}"


def test_logprobs_depend_on_the_prompt(tiny_policy):
    """Guards against a broadcast that silently drops the prefix: a different prompt changes the result."""
    prompt, completions = _group(tiny_policy)
    with torch.no_grad():
        a = tiny_policy.group_logprobs(prompt, completions).logprobs
        b = tiny_policy.group_logprobs(prompt[:-40] + prompt[-20:], completions).logprobs
    assert (a - b).abs().max() > 1e-3


def test_single_token_completions_and_group_of_one(tiny_policy):
    prompt, _ = _group(tiny_policy)
    with torch.no_grad():
        for comps in ([[5]], [[5], [9]], [[5, 6, 7]]):
            torch.testing.assert_close(tiny_policy.group_logprobs(prompt, comps).logprobs,
                                       tiny_policy.naive_group_logprobs(prompt, comps).logprobs, atol=1e-4, rtol=0)


def test_empty_inputs_raise(tiny_policy):
    with pytest.raises(PolicyError, match="non-empty prompt"):
        tiny_policy.group_logprobs([], [[1]])
    with pytest.raises(PolicyError, match="no empty completion"):
        tiny_policy.group_logprobs([1, 2], [[3], []])


@pytest.mark.smollm
def test_shared_prefix_matches_naive_on_smollm(smollm_policy):
    """SmolLM2 uses grouped-query attention (9 query / 3 key-value heads), which the tiny model does not."""
    messages, tools = terminal_conversation(300, seed=4)
    prompt = smollm_policy.prompt_ids(messages, tools)
    completions = [[520, 9531, 198], [19556], [28, 29, 30, 31, 32, 33]]
    with torch.no_grad():
        shared = smollm_policy.group_logprobs(prompt, completions)
        naive = smollm_policy.naive_group_logprobs(prompt, completions)
    torch.testing.assert_close(shared.logprobs, naive.logprobs, atol=1e-3, rtol=0)
