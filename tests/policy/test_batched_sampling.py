"""Sampling many states of a trajectory in one call: per-(prompt, sample) seeding, shared roots,
finished rows leaving the batch, the memory cap, and the inverse-CDF sampler's distribution.

The point of the seeding rule: a state's samples must not depend on which other states share its
`generate` call, so the profiler can batch a trajectory's states and still write the file one call
per state writes (and the Ray profiler, which samples one state per call, writes the same file).
"""

from __future__ import annotations

import random

import pytest
import torch

from pivot_algo.policy import PolicyError
from pivot_algo.policy.batching import (
    RowNoise,
    prompt_roots,
    prompt_seed,
    shared_chunks,
)
from pivot_algo.policy.hf import HFPolicy
from pivot_envs.domains.terminal.tasks.recorder import builtin_trajectories
from pivot_envs.trajectory import load_trajectories
from tests.policy.conftest import LEGACY, assert_same_samples, sample_ids


def _trajectory_prompts(policy, trajectories: int = 2) -> list[list[int]]:
    """Every turn's prompt of the first `trajectories` built-in train trajectories, in visiting order."""
    out: list[list[int]] = []
    for traj in load_trajectories(builtin_trajectories("train", n=trajectories)):
        out.extend(policy.prompt_ids(traj.prefix(k), traj.tools) for k in range(traj.num_turns))
    return out


def test_a_prompts_samples_do_not_depend_on_the_rest_of_the_call(fresh_tiny):
    policy = fresh_tiny
    prompts = _trajectory_prompts(policy)
    seeds = [1000 + i for i in range(len(prompts))]
    kw = {"max_new_tokens": 10, "temperature": 0.9}
    together = policy.generate(prompts, 4, seeds=seeds, **kw)
    policy.clear_prefix_cache()
    alone = [policy.generate([p], 4, seed=s, **kw)[0] for p, s in zip(prompts, seeds)]
    assert_same_samples(together, alone)
    order = list(range(len(prompts)))
    random.Random(0).shuffle(order)
    shuffled = policy.generate([prompts[i] for i in order], 4, seeds=[seeds[i] for i in order], **kw)
    assert_same_samples([shuffled[order.index(i)] for i in range(len(prompts))], together)
    assert_same_samples(policy.generate(prompts, 4, seeds=seeds, max_batch_tokens=1, **kw), together)  # one prompt per chunk
    assert_same_samples(policy.generate(prompts, 4, seeds=seeds, prefix_reuse=False, **kw), together)
    assert_same_samples(policy.generate(prompts, 4, seeds=seeds, **LEGACY, **kw), together)
    # Different seeds do give different samples (the check above can fail).
    assert sample_ids(policy.generate(prompts, 4, seeds=[s + 1 for s in seeds], **kw)) != sample_ids(together)


def test_seed_of_a_call_is_prompt_zeros_seed(fresh_tiny):
    """generate(prompts, seed=s) == generate(prompts, seeds=[prompt_seed(s, i)]): prompt 0 gets s."""
    policy = fresh_tiny
    prompts = _trajectory_prompts(policy, 1)[:3]
    a = policy.generate(prompts, 3, max_new_tokens=8, seed=7)
    b = policy.generate(prompts, 3, max_new_tokens=8, seeds=[prompt_seed(7, i) for i in range(3)])
    assert_same_samples(a, b)
    assert prompt_seed(7, 0) == 7 and len({prompt_seed(7, i) for i in range(50)}) == 50
    with pytest.raises(PolicyError, match="one seed per prompt"):
        policy.generate(prompts, 3, max_new_tokens=8, seeds=[1, 2])


def test_unseeded_calls_follow_torch_manual_seed(fresh_tiny):
    prompt = _trajectory_prompts(fresh_tiny, 1)[0]
    torch.manual_seed(3)
    a = fresh_tiny.generate([prompt], 4, max_new_tokens=8)
    torch.manual_seed(3)
    b = fresh_tiny.generate([prompt], 4, max_new_tokens=8)
    c = fresh_tiny.generate([prompt], 4, max_new_tokens=8)
    assert sample_ids(a) == sample_ids(b) != sample_ids(c)


def test_a_trajectorys_turns_share_one_prefill(fresh_tiny):
    """All turns of one trajectory in one call: the longest prompt is computed once, the earlier
    turns read its first positions (no prompt token is computed twice)."""
    policy = fresh_tiny
    prompts = _trajectory_prompts(policy, 1)
    assert prompt_roots(prompts) == {len(prompts) - 1: list(range(len(prompts)))}
    stats = policy.prefix_cache.stats
    policy.generate(prompts, 2, max_new_tokens=4, seed=0)
    assert stats.computed_tokens == len(prompts[-1]) and stats.lookups == 1


def test_roots_and_chunks():
    a, b, c = [1, 2, 3], [1, 2, 3, 4, 5], [9, 8]
    assert prompt_roots([a, b, c]) == {1: [0, 1], 2: [2]}
    assert prompt_roots([a, a]) == {0: [0, 1]}  # equal prompts share one root
    # Budget: rows x max_new_tokens per prompt, plus each root's length once.
    assert shared_chunks([a, b, c], 2, 4, 10**6) == [[0, 1, 2]]
    assert shared_chunks([a, b, c], 2, 4, 5 + 8 + 8) == [[0, 1], [2]]  # b's root + 2 x 8 rows fit, c does not
    assert shared_chunks([a, b, c], 2, 4, 1) == [[1], [0], [2]]  # over budget: one prompt per chunk
    for budget in (14, 21, 30):
        for chunk in shared_chunks([a, b, c], 2, 4, budget):
            prompts = [[a, b, c][i] for i in chunk]
            cost = sum(len(prompts[r]) for r in prompt_roots(prompts)) + len(chunk) * 2 * 4
            assert cost <= budget or len(chunk) == 1


def test_finished_rows_leave_the_batch_and_samples_stay_the_same(fresh_tiny, monkeypatch):
    """Make a frequent token the end-of-turn token so that rows stop at different steps: the shared
    engine then runs fewer rows per decode step, and still samples what the legacy engine samples."""
    policy = fresh_tiny
    prompts = _trajectory_prompts(policy, 1)[:3]
    probe = policy.generate(prompts, 4, max_new_tokens=12, seed=0)
    counts: dict[int, int] = {}
    for g in probe:
        for c in g:
            for t in c.token_ids[1:6]:
                counts[t] = counts.get(t, 0) + 1
    frequent = max(counts, key=counts.__getitem__)
    monkeypatch.setattr(policy, "end_of_turn_id", frequent)
    rows_per_step: list[int] = []
    hook = policy.model.register_forward_hook(lambda m, args, kwargs, out: rows_per_step.append(
        kwargs["input_ids"].shape[0]) if kwargs.get("pivot_decode") is not None else None, with_kwargs=True)
    try:
        shared = policy.generate(prompts, 4, max_new_tokens=12, seed=0)
    finally:
        hook.remove()
    legacy = policy.generate(prompts, 4, max_new_tokens=12, seed=0, **LEGACY)
    assert_same_samples(shared, legacy)
    stopped = [len(c.token_ids) for g in shared for c in g if c.finish_reason == "stop"]
    assert stopped and len({len(c.token_ids) for g in shared for c in g}) > 1
    assert rows_per_step[0] == 12 and rows_per_step[-1] < 12 and rows_per_step == sorted(rows_per_step, reverse=True)


@pytest.mark.parametrize("top_p", [1.0, 0.7])
def test_gumbel_sampler_draws_from_the_distribution(top_p):
    """20k draws from a fixed 6-token distribution: frequencies within 4 standard errors of the
    (nucleus-renormalised) probabilities, dropped tokens never drawn, log-probs exact."""
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0, -3.0]])
    draws = 20000
    noise = RowNoise([0], draws).gumbel(range(draws), 6)
    tok, lp = HFPolicy._sample(logits.expand(draws, -1), 0.8, top_p, noise)
    probs = torch.softmax(logits[0] / 0.8, -1)
    if top_p < 1:
        keep = (probs.cumsum(0) - probs) < top_p
        probs = torch.where(keep, probs, 0.0)
        probs = probs / probs.sum()
    freq = torch.bincount(tok, minlength=6).double() / draws
    se = (probs.double() * (1 - probs.double()) / draws).sqrt()
    assert bool(((freq - probs.double()).abs() <= 4 * se + 1e-12).all()), (freq, probs)
    assert bool((freq[probs == 0] == 0).all())
    torch.testing.assert_close(lp, probs.log()[tok].float(), atol=1e-5, rtol=0)


def test_row_noise_streams_are_per_prompt_and_sample():
    a = RowNoise([5, 6], 3)
    first = a.gumbel(range(6), 10)
    torch.testing.assert_close(RowNoise([6], 3).gumbel(range(3), 10), first[3:])  # prompt 6's rows, whatever precedes
    torch.testing.assert_close(RowNoise([5], 2).gumbel(range(2), 10), first[:2])  # sample j's stream ignores n
    assert not torch.equal(first[0], first[1])
    # A row draws only when it samples: its next draw is the same whatever other rows did meanwhile.
    b = RowNoise([5, 6], 3)
    b.gumbel([4], 10)
    torch.testing.assert_close(a.gumbel([4], 10), b.gumbel([4], 10))


def test_use_sampler_switches_the_path_and_keeps_the_samples(fresh_tiny):
    policy = fresh_tiny
    prompts = _trajectory_prompts(policy, 1)[:2]
    new = policy.generate(prompts, 3, max_new_tokens=8, seed=4)
    policy.use_sampler("legacy")
    assert policy.engine == "legacy" and policy.prefix_cache.max_entries == 0
    stats = policy.prefix_cache.stats
    old = policy.generate(prompts, 3, max_new_tokens=8, seed=4)
    assert stats.reused_tokens == 0  # nothing reused on the legacy path
    assert_same_samples(new, old)
    policy.use_sampler("shared_prefix")
    assert policy.engine == "shared_prefix" and policy.prefix_cache.max_entries > 0
    with pytest.raises(PolicyError, match="unknown sampler"):
        policy.use_sampler("fast")


@pytest.mark.smollm
@pytest.mark.slow
def test_smollm_batched_turns_sample_what_legacy_samples_per_state(smollm_policy):
    """SmolLM2 (grouped-query attention, real ~400-900-token prompts): a trajectory's five turns
    in one shared-prefix call vs the legacy sampler one state at a time, token for token."""
    smollm_policy.clear_prefix_cache()
    prompts = _trajectory_prompts(smollm_policy, 1)[:5]
    seeds = [11 * i for i in range(len(prompts))]
    kw = {"max_new_tokens": 8, "temperature": 0.8}
    batched = smollm_policy.generate(prompts, 3, seeds=seeds, **kw)
    legacy = [smollm_policy.generate([p], 3, seed=s, **LEGACY, **kw)[0] for p, s in zip(prompts, seeds)]
    assert_same_samples(batched, legacy, atol=1e-4)
