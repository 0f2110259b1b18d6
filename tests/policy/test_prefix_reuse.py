"""Prefix reuse and shared-prefix decoding give the same samples as the sampler they replace.

"Same samples" means: same seed -> identical token ids, and sampling log-probs equal to float
rounding (the engines add up the same attention in a different order). The consecutive turns come
from the built-in terminal suite, the conversations profiling and PivotRL actually visit.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from pivot_algo.policy import PolicyError, load_policy
from pivot_algo.policy.hf import HFPolicy
from pivot_algo.policy.prefix_cache import PrefixKVCache
from pivot_algo.policy.shared_decode import (
    shared_prefix_attention,
    supports_shared_decode,
)
from pivot_envs.domains.terminal.tasks.recorder import builtin_trajectories
from pivot_envs.trajectory import load_trajectories
from tests.policy.conftest import LEGACY, assert_same_samples


def _turn_prompts(policy, trajectory_index: int = 0) -> list[list[int]]:
    traj = load_trajectories(builtin_trajectories("train", n=trajectory_index + 1))[trajectory_index]
    return [policy.prompt_ids(traj.prefix(k), traj.tools) for k in range(traj.num_turns)]


def test_consecutive_turns_reuse_the_previous_prompt_and_sample_the_same(fresh_tiny):
    policy = fresh_tiny
    prompts = _turn_prompts(policy)
    assert len(prompts) >= 4 and all(p[: len(q)] == q for q, p in itertools.pairwise(prompts))  # turn k is a prefix of k+1
    stats = policy.prefix_cache.stats
    for k, prompt in enumerate(prompts):
        reused0, computed0 = stats.reused_tokens, stats.computed_tokens
        with_reuse = policy.generate([prompt], 4, max_new_tokens=10, temperature=0.8, seed=k)
        if k > 0:  # the whole previous turn's prompt came from the cache
            assert stats.reused_tokens - reused0 == len(prompts[k - 1])
            assert stats.computed_tokens - computed0 == len(prompt) - len(prompts[k - 1])
        no_reuse = policy.generate([prompt], 4, max_new_tokens=10, temperature=0.8, seed=k, prefix_reuse=False)
        legacy = policy.generate([prompt], 4, max_new_tokens=10, temperature=0.8, seed=k, **LEGACY)
        assert_same_samples(with_reuse, no_reuse)
        assert_same_samples(with_reuse, legacy)
    assert len(policy.prefix_cache) == 1  # each turn's entry covered (and replaced) the previous one


@pytest.mark.parametrize("kwargs", [{"temperature": 1.0}, {"temperature": 0.5, "top_p": 0.9}, {"temperature": 0.0}])
def test_shared_engine_matches_legacy_on_several_prompts(tiny_policy, kwargs):
    """Several prompts of different lengths in one call (legacy left-pads them; shared keeps one
    prefix per prompt), and one prompt per chunk."""
    prompts = _turn_prompts(tiny_policy, 1)[:3]
    for extra in ({}, {"max_batch_tokens": 1}):
        legacy = tiny_policy.generate(prompts, 3, max_new_tokens=9, seed=5, **LEGACY, **kwargs, **extra)
        shared = tiny_policy.generate(prompts, 3, max_new_tokens=9, seed=5, prefix_reuse=False, **kwargs, **extra)
        reused = tiny_policy.generate(prompts, 3, max_new_tokens=9, seed=5, **kwargs, **extra)
        assert_same_samples(legacy, shared)
        assert_same_samples(legacy, reused)


def test_shared_engine_logprobs_match_scoring(tiny_policy):
    prompts = _turn_prompts(tiny_policy)[1:3]
    out = tiny_policy.generate(prompts, 4, max_new_tokens=12, temperature=0.7, seed=2)
    for prompt, group in zip(prompts, out):
        with torch.no_grad():
            scored = tiny_policy.group_logprobs(prompt, [c.token_ids for c in group], temperature=0.7)
        for i, c in enumerate(group):
            torch.testing.assert_close(scored.logprobs[i, : len(c.token_ids)], torch.tensor(c.logprobs),
                                       atol=1e-4, rtol=0)


def _sample_update_sample(policy):
    """Sample turn 1, take one AdamW step on those samples, sample turn 2 (which extends turn 1)."""
    prompts = _turn_prompts(policy)
    old = policy.generate([prompts[1]], 4, max_new_tokens=10, seed=1)
    assert len(policy.prefix_cache) == 1
    opt = torch.optim.AdamW(policy.model.parameters(), lr=5e-2)
    with torch.enable_grad():
        lp = policy.group_logprobs(prompts[1], [c.token_ids for c in old[0]])
        (-(lp.logprobs * lp.mask).sum()).backward()
    opt.step()
    new = policy.generate([prompts[2]], 4, max_new_tokens=10, seed=1)
    fresh = policy.generate([prompts[2]], 4, max_new_tokens=10, seed=1, **LEGACY)  # new weights, no cache
    return new, fresh


def test_an_optimiser_step_invalidates_the_cache(fresh_tiny):
    """After the weights change, reuse must not serve the old weights' KV: the samples equal a
    from-scratch prefill under the NEW weights."""
    new, fresh = _sample_update_sample(fresh_tiny)
    stats = fresh_tiny.prefix_cache.stats
    assert stats.invalidations == 1 and stats.hits == 0  # nothing was reused across the update
    assert_same_samples(new, fresh)


def test_without_invalidation_the_samples_would_be_stale(fresh_tiny, monkeypatch):
    """The control for the test above: a cache blind to weight changes serves stale KV, and the
    samples visibly differ (so the check above can fail)."""
    monkeypatch.setattr("pivot_algo.policy.prefix_cache.weights_fingerprint", lambda model: ())
    new, fresh = _sample_update_sample(fresh_tiny)
    assert fresh_tiny.prefix_cache.stats.hits == 1
    with pytest.raises(AssertionError):  # the old weights' prefix shows in the log-probs
        assert_same_samples(new, fresh)


def test_stored_entries_are_never_written(tiny_policy):
    """Reusing an entry (DynamicCache built from it, cropped, extended) leaves its tensors as they were."""
    prompts = _turn_prompts(tiny_policy)
    cache = PrefixKVCache(max_entries=4)
    first = cache.prefill(tiny_policy.model, prompts[2])
    snapshot = [(k.clone(), v.clone()) for k, v in first.kv]
    second = cache.prefill(tiny_policy.model, prompts[3])  # extends the entry of prompts[2]
    shorter = cache.prefill(tiny_policy.model, prompts[1])  # crops it
    assert second.reused_tokens == len(prompts[2]) and shorter.reused_tokens == len(prompts[1]) - 1
    for (k, v), (k0, v0) in zip(first.kv, snapshot):
        assert torch.equal(k, k0) and torch.equal(v, v0)
    full = PrefixKVCache(max_entries=0).prefill(tiny_policy.model, prompts[3])  # no reuse at all
    assert full.reused_tokens == 0
    torch.testing.assert_close(second.logits, full.logits, atol=1e-5, rtol=0)
    for (k, v), (kf, vf) in zip(second.kv, full.kv):
        torch.testing.assert_close(k, kf, atol=1e-5, rtol=0)
        torch.testing.assert_close(v, vf, atol=1e-5, rtol=0)


def test_lru_limits(tiny_policy):
    prompts = _turn_prompts(tiny_policy, 0)[:2] + _turn_prompts(tiny_policy, 1)[:2]
    cache = PrefixKVCache(max_entries=2)
    for p in prompts:
        cache.prefill(tiny_policy.model, p)
    assert len(cache) == 2  # prompts[0] was covered by prompts[1]; then the LRU cap evicted one more
    one = cache.nbytes // 2
    small = PrefixKVCache(max_entries=8, max_bytes=one)
    for p in prompts:
        small.prefill(tiny_policy.model, p)
    assert small.nbytes <= one
    with pytest.raises(PolicyError, match="empty prompt"):
        cache.prefill(tiny_policy.model, [])
    with pytest.raises(PolicyError, match=">= 0"):
        PrefixKVCache(max_entries=-1)


def test_attention_switch_is_restored_after_an_error(fresh_tiny):
    policy = fresh_tiny
    before = policy.model.config._attn_implementation
    calls = {"n": 0}

    def fail_on_decode(module, args, output):
        calls["n"] += 1
        if calls["n"] > 1:  # the prefill passes; the first decode step fails
            raise RuntimeError("boom")

    handle = policy.model.register_forward_hook(fail_on_decode)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            policy.generate([_turn_prompts(policy)[0]], 2, max_new_tokens=4, seed=0, prefix_reuse=False)
    finally:
        handle.remove()
    assert policy.model.config._attn_implementation == before
    with pytest.raises(RuntimeError, match="only runs decode steps"):
        shared_prefix_attention(policy.model.model.layers[0].self_attn, torch.zeros(1, 4, 1, 64),
                                torch.zeros(1, 4, 1, 64), torch.zeros(1, 4, 1, 64), None)


def test_unknown_engine_and_unsupported_attention():
    from transformers import MistralConfig, MistralForCausalLM

    tiny = load_policy("tiny")
    with pytest.raises(PolicyError, match="unknown sampling engine"):
        tiny.generate([[1, 2, 3]], 1, max_new_tokens=2, engine="fast")
    with pytest.raises(PolicyError, match="unknown sampling engine"):
        HFPolicy(tiny.model, tiny.tokenizer, engine="fast")
    # A sliding-window model cannot use the shared-prefix engine: it falls back to the legacy one.
    cfg = MistralConfig(vocab_size=len(tiny.tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, sliding_window=16)
    mistral = HFPolicy(MistralForCausalLM(cfg), tiny.tokenizer)
    assert not supports_shared_decode(mistral.model) and mistral.engine == "legacy"
    with pytest.raises(PolicyError, match="sliding-window"):
        mistral.generate([[1, 2, 3]], 1, max_new_tokens=2, engine="shared_prefix")
    assert len(mistral.generate([[1, 2, 3]], 2, max_new_tokens=3, seed=0)[0]) == 2


@pytest.mark.smollm
@pytest.mark.slow
def test_smollm_reuse_matches_legacy(smollm_policy):
    """Grouped-query attention (9 query / 3 KV heads) and real long prompts: two consecutive turns."""
    smollm_policy.clear_prefix_cache()
    prompts = _turn_prompts(smollm_policy)[2:4]
    for k, prompt in enumerate(prompts):
        reused = smollm_policy.generate([prompt], 3, max_new_tokens=6, temperature=0.8, seed=k)
        legacy = smollm_policy.generate([prompt], 3, max_new_tokens=6, temperature=0.8, seed=k, **LEGACY)
        assert_same_samples(reused, legacy, atol=1e-4)
    assert smollm_policy.prefix_cache.stats.reused_tokens >= len(prompts[0])
