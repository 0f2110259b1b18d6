"""An LRU of prompt KV caches keyed by token ids, so that later turns of a conversation reuse earlier ones.

Profiling, PivotRL sampling and evaluation visit the turns of a trajectory in order, and the prompt
of turn k+1 starts with the whole prompt of turn k (the chat template's prefix property, tested in
tests/policy/test_chat_template.py). `PrefixKVCache.prefill(model, prompt)` finds the stored entry
sharing the longest token prefix with `prompt`, reuses that many positions (a `DynamicCache` built
from the entry and `crop`ped to the common length) and runs the model only on the rest; the
result is stored for the next call. The last prompt token is always recomputed, so the returned
next-token logits come from a real forward of the current weights.

Staleness: entries are valid only for the weights that produced them. Every lookup compares a
fingerprint of the parameters (storage pointer and in-place version counter of each; an optimiser
step, `load_state_dict` or any in-place write bumps the counter) and drops everything when it
changed. Writes through `param.data` bypass the version counter: call `clear()` after those.

Memory: one SmolLM2-135M entry is ~46 KB per token (30 layers x K and V x 3 heads x 64 x fp32), so
a 1k-token prompt is ~46 MB; the cache holds at most `max_entries` entries and `max_bytes` bytes.
An entry whose tokens are a prefix of a newly stored one is dropped (the new one covers it).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch

from pivot_algo.policy.errors import PolicyError
from pivot_algo.policy.hf_compat import output_cache, with_cache


def _dynamic_cache(kv: Sequence[tuple[torch.Tensor, torch.Tensor]] | None, config: Any) -> Any:
    from transformers import DynamicCache

    if kv is None:
        return DynamicCache(config=config)
    return DynamicCache(ddp_cache_data=[(k, v) for k, v in kv])


@dataclasses.dataclass
class Prefill:
    """A prompt's KV (per layer, each [1, kv_heads, len(prompt), head_dim]) and next-token logits
    [len(logit_positions), V] (one row per position asked for; [1, V] by default: the last one)."""

    kv: list[tuple[torch.Tensor, torch.Tensor]]
    logits: torch.Tensor
    reused_tokens: int  # prompt positions taken from the cache (not recomputed)


@dataclasses.dataclass
class _Entry:
    tokens: torch.Tensor  # [P] long, the prompt this KV belongs to
    kv: list[tuple[torch.Tensor, torch.Tensor]]
    nbytes: int


@dataclasses.dataclass
class PrefixCacheStats:
    lookups: int = 0
    hits: int = 0  # lookups that reused at least one position
    reused_tokens: int = 0
    computed_tokens: int = 0
    invalidations: int = 0  # times the weights changed under the cache


def weights_fingerprint(model: torch.nn.Module) -> tuple:
    """Changes whenever a parameter is replaced or written in place (not through `.data`)."""
    return tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in model.parameters())


class PrefixKVCache:
    """See the module docstring. `max_entries=0` disables reuse (every prompt computed in full)."""

    def __init__(self, max_entries: int = 8, max_bytes: int = 512 << 20) -> None:
        if max_entries < 0 or max_bytes < 0:
            raise PolicyError(f"prefix cache sizes must be >= 0, got max_entries={max_entries}, max_bytes={max_bytes}")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[int, _Entry] = OrderedDict()  # LRU order: oldest first
        self._next_key = 0
        self._fingerprint: tuple | None = None
        self.stats = PrefixCacheStats()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return sum(e.nbytes for e in self._entries.values())

    def clear(self) -> None:
        self._entries.clear()

    def _check_weights(self, model: torch.nn.Module) -> None:
        fp = weights_fingerprint(model)
        if fp != self._fingerprint:
            if self._entries:
                self.stats.invalidations += 1
            self._entries.clear()
            self._fingerprint = fp

    def _longest_match(self, prompt: torch.Tensor) -> tuple[int | None, int]:
        best, best_len = None, 0
        for key, entry in self._entries.items():
            n = min(len(entry.tokens), len(prompt))
            if n <= best_len:
                continue
            diff = (entry.tokens[:n] != prompt[:n]).nonzero()
            common = int(diff[0]) if len(diff) else n
            if common > best_len:
                best, best_len = key, common
        return best, best_len

    @torch.no_grad()
    def prefill(self, model: torch.nn.Module, prompt: Sequence[int], logit_positions: Sequence[int] | None = None
                ) -> Prefill:
        """KV cache of `prompt` under `model`'s current weights, and the next-token logits at
        `logit_positions` (default: the last position), one row per position. Every position asked
        for is recomputed (reuse stops before the earliest one), so its logits come from a real
        forward of the current weights."""
        if len(prompt) == 0:
            raise PolicyError("cannot prefill an empty prompt; build prompts with policy.prompt_ids(messages, tools)")
        positions = [len(prompt) - 1] if logit_positions is None else list(logit_positions)
        if not positions or min(positions) < 0 or max(positions) >= len(prompt):
            raise PolicyError(f"logit_positions must be non-empty positions of the prompt (0..{len(prompt) - 1}), "
                              f"got {positions}")
        device = next(model.parameters()).device
        tokens = torch.tensor(list(prompt), dtype=torch.long)
        self.stats.lookups += 1
        reuse, entry_key = 0, None
        if self.max_entries > 0:
            self._check_weights(model)
            entry_key, common = self._longest_match(tokens)
            reuse = min(common, min(positions))  # always run the positions whose logits are returned
        if entry_key is not None and reuse > 0:
            entry = self._entries[entry_key]
            self._entries.move_to_end(entry_key)
            cache = _dynamic_cache(entry.kv, model.config)
            cache.crop(reuse - len(entry.tokens))  # crop(-n) drops the last n positions (no-op at 0)
            self.stats.hits += 1
        else:
            reuse = 0
            cache = _dynamic_cache(None, model.config)
        rest = tokens[reuse:].to(device)[None, :]
        pos_ids = torch.arange(reuse, len(tokens), device=device)[None, :]
        keep: int | torch.Tensor = 1 if positions == [len(prompt) - 1] else \
            torch.tensor([p - reuse for p in positions], device=device)
        out = model(input_ids=rest, position_ids=pos_ids, use_cache=True, logits_to_keep=keep, **with_cache(model, cache))
        kv = [(layer.keys, layer.values) for layer in output_cache(out).layers]
        self.stats.reused_tokens += reuse
        self.stats.computed_tokens += len(tokens) - reuse
        if self.max_entries > 0:
            self._store(tokens, kv)
        return Prefill(kv=kv, logits=out.logits[0].float(), reused_tokens=reuse)

    def _store(self, tokens: torch.Tensor, kv: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        nbytes = sum(k.nbytes + v.nbytes for k, v in kv)
        if nbytes > self.max_bytes:
            return
        for key in [k for k, e in self._entries.items()  # entries the new one covers
                    if len(e.tokens) <= len(tokens) and torch.equal(e.tokens, tokens[: len(e.tokens)])]:
            del self._entries[key]
        self._entries[self._next_key] = _Entry(tokens, kv, nbytes)
        self._next_key += 1
        while len(self._entries) > self.max_entries or self.nbytes > self.max_bytes:
            self._entries.popitem(last=False)
