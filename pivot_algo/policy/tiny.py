"""The tiny test model: a Llama-style network built from a config and a byte-level BPE tokenizer
trained here, on a corpus generated in-process. Nothing is downloaded; the same seed gives the same
tokenizer and the same initial weights, so tests and quick benchmarks are reproducible.

Sizes (TINY_CONFIG): hidden 256, 4 layers, 4 heads; the BPE trainer stops at ~2.3k tokens (its corpus
supports no more merges; VOCAB_SIZE = 3072 is the ceiling) -> 3.75M parameters.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import torch

from pivot_algo.policy.chat_template import chat_template

VOCAB_SIZE = 3072
# Special tokens are control tokens (skipped when decoding); the tool markup tokens are added tokens
# that decode as text (the Hermes parser must see `<tool_call>` in the decoded completion).
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MARKUP_TOKENS = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<tools>", "</tools>"]

TINY_CONFIG: dict[str, Any] = {
    "hidden_size": 256, "intermediate_size": 688, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 4,
    "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": True,
    "vocab_size": VOCAB_SIZE, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0,
}

_WORDS = ["the", "a", "an", "file", "files", "directory", "list", "show", "print", "count", "find", "remove", "create", "copy", "move", "read", "write", "line", "lines", "word", "words", "number", "numbers", "error", "output", "input", "test", "tests", "run", "build", "install", "check", "please", "can", "you", "then", "and", "or", "not", "with", "from", "into", "all", "each", "first", "last", "new", "old", "size", "name", "path", "data", "log", "logs", "config", "user", "task", "done", "result", "value", "values", "json", "text", "script", "python", "shell", "command", "current", "working", "home", "sorted", "unique", "largest", "smallest", "total", "hidden", "empty", "permission", "owner", "group", "archive", "backup", "project"]
_COMMANDS = ("ls", "ls -la", "cat", "head -n 5", "tail -n 20", "wc -l", "grep -rn", "find . -name", "mkdir -p",
             "rm -f", "cp -r", "mv", "echo", "sort", "uniq -c", "chmod +x", "tar -czf", "python3", "pip install",
             "sed -i", "awk '{print $1}'", "du -sh", "touch", "pwd", "cd", "git status", "git diff", "pytest -q")
_NAMES = ("app", "src", "main.py", "notes.txt", "data.csv", "README.md", "config.yaml", "logs", "out.json",
          "test_app.py", "build", "tmp", "report.md", "setup.cfg", "requirements.txt", "a.txt", "b.txt")
_TOOLS = ("bash", "read_file", "write_file", "search", "get_weather", "book_flight", "list_dir", "calculator")


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 14))]
    return " ".join(words).capitalize() + rng.choice([".", "?", "!", ":"])


def _command(rng: random.Random) -> str:
    parts = [f"{rng.choice(_COMMANDS)} {rng.choice(_NAMES)}" for _ in range(rng.randint(1, 3))]
    return rng.choice([" && ", " | ", "; "]).join(parts)


def _tool_call(rng: random.Random) -> dict:
    name = rng.choice(_TOOLS)
    if name == "bash":
        args: dict[str, Any] = {"command": _command(rng)}
    else:
        args = {rng.choice(_WORDS): rng.choice([rng.choice(_NAMES), rng.randint(0, 999), rng.random() < 0.5])
                for _ in range(rng.randint(1, 3))}
    return {"name": name, "arguments": args}


def _tool_schema(name: str) -> dict:
    return {"type": "function", "function": {"name": name, "description": f"Run {name}.",
            "parameters": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}}


def corpus(seed: int = 0, n_docs: int = 4000) -> Iterator[str]:
    """Text the tokenizer is trained on: English-ish sentences, shell commands, tool-call JSON,
    command output, and the chat template's markup, deterministic for a seed."""
    rng = random.Random(seed)
    yield chat_template()
    for _ in range(n_docs):
        kind = rng.randrange(5)
        if kind == 0:
            yield " ".join(_sentence(rng) for _ in range(rng.randint(1, 4)))
        elif kind == 1:
            yield "\n".join(_command(rng) for _ in range(rng.randint(1, 4)))
        elif kind == 2:
            yield "<tool_call>\n" + json.dumps(_tool_call(rng), ensure_ascii=False) + "\n</tool_call>"
        elif kind == 3:
            yield "\n".join(f"-rw-r--r-- 1 root root {rng.randint(0, 99999)} {rng.choice(_NAMES)}"
                            for _ in range(rng.randint(1, 5)))
        else:
            yield ("<|im_start|>system\n# Tools\n<tools>\n" + json.dumps(_tool_schema(rng.choice(_TOOLS))) +
                   "\n</tools><|im_end|>\n<|im_start|>user\n" + _sentence(rng) + "<|im_end|>\n<|im_start|>assistant\n"
                   + _sentence(rng) + "<|im_end|>\n<|im_start|>user\n<tool_response>\n" + str(rng.randint(0, 10**6))
                   + "\n</tool_response><|im_end|>\n")


def build_tokenizer(seed: int = 0) -> Any:
    """Train a byte-level BPE tokenizer on `corpus(seed)` and wrap it as a transformers fast tokenizer."""
    from tokenizers import (
        AddedToken,
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, min_frequency=2, show_progress=False,
        special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(seed), trainer=trainer)
    tok.add_tokens([AddedToken(t, normalized=False, special=False) for t in MARKUP_TOKENS])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", unk_token=None)
    fast.chat_template = chat_template()
    return fast


def build_model(vocab_size: int, seed: int = 0, **overrides: Any) -> torch.nn.Module:
    """A freshly initialised tiny Llama; weights depend only on `seed` (global RNG left untouched).
    `overrides` replace fields of TINY_CONFIG (e.g. hidden_size=128 for a smaller world model)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    unknown = sorted(set(overrides) - set(TINY_CONFIG))
    if unknown:
        raise ValueError(f"unknown tiny-model config field(s) {unknown}; choose from {sorted(TINY_CONFIG)}")
    cfg = dict(TINY_CONFIG, **overrides, vocab_size=vocab_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(LlamaConfig(**cfg))
    return model
