"""The policy contract the algorithms use.

A policy turns a conversation (OpenAI messages + tool schemas) into token ids with its chat
template, samples G completions per prompt with their token ids and sampling log-probs, and
computes log-probs of given completions under its current weights (with gradients, for the loss).
All G completions of one prompt share that prompt: backends compute it once per group.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Sequence
from typing import Any

import torch


@dataclasses.dataclass
class Completion:
    """One sampled assistant turn."""

    text: str
    token_ids: list[int]
    logprobs: list[float]  # log-prob of each token under the sampling policy
    finish_reason: str = "stop"  # "stop" (end-of-turn token) | "length"


@dataclasses.dataclass
class GroupLogprobs:
    """Per-token log-probs of G completions that share one prompt.

    `logprobs[i, t]` is log p(completion_i[t] | prompt, completion_i[:t]); `mask[i, t]` is 1 where
    completion i has a token t (completions are right-padded to the longest).
    """

    logprobs: torch.Tensor  # [G, T]
    mask: torch.Tensor  # [G, T] float


class Policy(abc.ABC):
    """A trainable policy. `model` is a torch.nn.Module; `tokenizer` a HF tokenizer."""

    model: torch.nn.Module
    tokenizer: Any

    @abc.abstractmethod
    def prompt_ids(self, messages: Sequence[dict], tools: Sequence[dict] | None = None) -> list[int]:
        """Token ids of the conversation followed by the assistant generation prompt. Must equal the
        prefix of `conversation_ids(messages + [reference], tools)` (tested)."""

    @abc.abstractmethod
    def completion_ids(self, messages: Sequence[dict], assistant: dict, tools: Sequence[dict] | None = None) -> list[int]:
        """Token ids of one assistant message as it appears after `prompt_ids(messages, tools)` in the
        full rendered conversation, end-of-turn token included (the SFT target / a reference action)."""

    @abc.abstractmethod
    def generate(self, prompts: Sequence[list[int]], n: int, *, max_new_tokens: int, temperature: float = 1.0,
                 top_p: float = 1.0, seed: int | None = None, seeds: Sequence[int] | None = None
                 ) -> list[list[Completion]]:
        """Sample `n` completions for each prompt (token ids). Returns one list of n per prompt.
        `temperature=0` is greedy. `seeds` (one per prompt) seeds each prompt on its own, so that
        its samples do not depend on the other prompts of the call; `seed` seeds the call.
        Backends may take extra keywords (e.g. `max_batch_tokens`)."""

    @abc.abstractmethod
    def group_logprobs(self, prompt: list[int], completions: Sequence[list[int]], *,
                       temperature: float = 1.0) -> GroupLogprobs:
        """Log-probs of each completion given the shared prompt, differentiable w.r.t. the weights,
        under softmax(logits / temperature) (importance ratios must use the sampling temperature).
        The prompt is computed once for the whole group."""

    def decode(self, token_ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(token_ids), skip_special_tokens=True)

    @abc.abstractmethod
    def save(self, path: str) -> None:
        """Write weights + tokenizer + chat template so that `load_policy(path)` restores them."""
