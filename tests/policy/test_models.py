"""Model factory and persistence."""

from __future__ import annotations

import os
import time

import pytest
import torch

from pivot_algo.policy import (
    HFPolicy,
    ModelUnavailableError,
    PolicyError,
    load_policy,
    tiny,
)
from pivot_algo.policy.synthetic import random_conversation


def test_tiny_model_shape(tiny_policy):
    n_params = sum(p.numel() for p in tiny_policy.model.parameters())
    assert 3_000_000 <= n_params <= 4_500_000
    assert 2000 <= len(tiny_policy.tokenizer) <= 4096
    cfg = tiny_policy.model.config
    assert (cfg.hidden_size, cfg.num_hidden_layers) == (256, 4)
    for special in tiny.SPECIAL_TOKENS + tiny.MARKUP_TOKENS:
        ids = tiny_policy.tokenizer.encode(special, add_special_tokens=False)
        assert len(ids) == 1, f"{special} must be a single token"


def test_tiny_build_is_deterministic():
    a, b = tiny.build_tokenizer(seed=0), tiny.build_tokenizer(seed=0)
    assert a.get_vocab() == b.get_vocab()
    text = "<|im_start|>assistant\n<tool_call>\n{\"name\": \"bash\"}\n</tool_call><|im_end|>"
    assert a.encode(text) == b.encode(text)
    m1, m2 = tiny.build_model(len(a), seed=0), tiny.build_model(len(a), seed=0)
    assert all(torch.equal(p, q) for p, q in zip(m1.state_dict().values(), m2.state_dict().values()))
    m3 = tiny.build_model(len(a), seed=1)
    assert not torch.equal(m1.model.layers[0].mlp.up_proj.weight, m3.model.layers[0].mlp.up_proj.weight)


def test_save_load_round_trip(tiny_policy, tmp_path):
    with torch.no_grad():  # make the weights differ from the cached tiny model
        tiny_policy.model.model.layers[0].mlp.up_proj.weight.add_(0.01)
    try:
        tiny_policy.save(tmp_path / "p")
        loaded = load_policy(tmp_path / "p")
        assert isinstance(loaded, HFPolicy) and loaded.name == tiny_policy.name
        for (n, p), (m, q) in zip(tiny_policy.model.state_dict().items(), loaded.model.state_dict().items()):
            assert n == m and torch.equal(p, q), n
        messages, tools = random_conversation(5)
        assert loaded.prompt_ids(messages, tools) == tiny_policy.prompt_ids(messages, tools)
        assert loaded.tokenizer.chat_template == tiny_policy.tokenizer.chat_template
        prompt = tiny_policy.prompt_ids(messages[:2], tools)
        with torch.no_grad():
            torch.testing.assert_close(loaded.group_logprobs(prompt, [[5, 6, 7]]).logprobs,
                                       tiny_policy.group_logprobs(prompt, [[5, 6, 7]]).logprobs, atol=0, rtol=0)
    finally:
        with torch.no_grad():
            tiny_policy.model.model.layers[0].mlp.up_proj.weight.sub_(0.01)


def test_tiny_cache_is_built_once(tmp_path, monkeypatch):
    monkeypatch.setenv("PIVOTRL_CACHE", str(tmp_path))
    t0 = time.perf_counter()
    first = load_policy("tiny")
    built = time.perf_counter() - t0
    t0 = time.perf_counter()
    second = load_policy("tiny")
    cached = time.perf_counter() - t0
    assert (tmp_path / "tiny-v1" / "pivot_policy.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["tiny-v1"]  # no temp dir left behind
    assert all(torch.equal(p, q) for p, q in zip(first.model.state_dict().values(), second.model.state_dict().values()))
    assert cached < built


def test_unknown_spec_and_non_policy_dir(tmp_path):
    with pytest.raises(ModelUnavailableError, match="unknown model spec"):
        load_policy("gpt-17")
    with pytest.raises(PolicyError, match="not a saved policy"):
        load_policy(tmp_path)


@pytest.mark.smollm
def test_smollm_loads_offline_with_tool_template(smollm_policy):
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    cfg = smollm_policy.model.config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.vocab_size) == (576, 30, 49152)
    assert getattr(cfg, "quantization_config", None) is None
    assert "<tool_call>" in smollm_policy.tokenizer.chat_template
    # the de-quantised weights are a working language model: a trivial continuation is likely
    ids = smollm_policy.tokenizer.encode("The capital of France is", add_special_tokens=False)
    with torch.no_grad():
        logits = smollm_policy.model(input_ids=torch.tensor([ids])).logits[0, -1]
    top = smollm_policy.tokenizer.decode([int(logits.argmax())])
    assert "Paris" in top
