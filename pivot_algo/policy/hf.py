"""`HFPolicy`: the Hugging Face `transformers` backend of the Policy contract (base.py).

Three things make it cheap for PivotRL, where G completions share one long prompt and consecutive
calls visit consecutive turns of one conversation:

- **Prefix reuse across calls** (`prefix_cache.py`): each prompt's KV cache is kept in a small LRU
  keyed by token ids; a later prompt that starts with a stored one (the next turn of the same
  trajectory) computes only its new tokens. Entries die when the weights change.
- **Shared-prefix decoding** (`shared_decode.py`, engine `"shared_prefix"`): the n rows of a prompt
  decode together against ONE copy of the prompt's KV (scores against it are one matmul for all
  rows); only generated tokens are stored per row, in a buffer allocated once. The previous engine,
  `"legacy"` (copy the prompt KV into every row, left-pad prompts into one merged cache, decode with
  the model's SDPA), stays selectable: `generate(..., engine="legacy", prefix_reuse=False)` is the
  sampler as it was before prefix reuse. Both engines use the same per-(prompt, sample) random
  numbers (`batching.py`), so the same seeds give the same samples (tested); log-probs agree to
  float rounding.
- **Batched turns** (`batching.py`): prompts of one call that are token prefixes of another
  (earlier turns of one trajectory) share its KV: one prefill of the longest, one KV copy, every
  row reading its own prompt's length of it; rows that finished leave the decode batch. Seeding is
  per (prompt, sample), so a trajectory's states sampled in one call give exactly what one call
  per state gives: callers (the profiler, PivotRL, evaluation) batch freely.
- **The loss** (`group_logprobs`) runs the prompt once with gradients, broadcasts its keys/values to
  the G completions (`expand` along the batch: the prefix is computed once, and its gradient is the
  sum over the G completions, flowing back through the prefix once), and runs the right-padded
  completions attending to prefix + their own tokens. `naive_group_logprobs` is the reference that
  concatenates prompt + completion per sequence; tests check the two agree (values and gradients).

Log-prob conventions. `Completion.logprobs` are log-probs under the distribution actually sampled
from: softmax(logits / temperature), restricted to the top-p nucleus and renormalised when top_p < 1;
at temperature 0 (greedy) the sampling distribution is a point mass, so they are 0.0. `group_logprobs`
scores with softmax(logits / temperature) (no top-p), so with top_p = 1 it reproduces the sampling
log-probs of the same weights; pass the sampling temperature to get matching importance ratios.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from pivot_algo.policy import chat_template as ct
from pivot_algo.policy.base import Completion, GroupLogprobs, Policy
from pivot_algo.policy.batching import (
    RowNoise,
    legacy_chunks,
    prompt_roots,
    prompt_seed,
    shared_chunks,
)
from pivot_algo.policy.errors import PolicyError
from pivot_algo.policy.hf_compat import output_cache, with_cache
from pivot_algo.policy.prefix_cache import PrefixKVCache
from pivot_algo.policy.shared_decode import (
    SharedPrefixDecode,
    shared_decode_attention,
    supports_shared_decode,
)

logger = logging.getLogger(__name__)

POLICY_META = "pivot_policy.json"  # written by save(); marks a directory load_policy() can read
ENGINES = ("shared_prefix", "legacy")


def _cache_cls():
    from transformers import DynamicCache

    return DynamicCache


class _RowDraw:
    """The noise of one chunk's rows: `draw(local_rows, logits)` -> their next Gumbel noise, or
    None when sampling is greedy (no random numbers drawn)."""

    def __init__(self, noise: RowNoise, chunk_rows: list[int], temperature: float) -> None:
        self.noise, self.chunk_rows, self.greedy = noise, chunk_rows, temperature == 0

    def __call__(self, local_rows: Sequence[int], logits: torch.Tensor) -> torch.Tensor | None:
        if self.greedy:
            return None
        return self.noise.gumbel([self.chunk_rows[r] for r in local_rows], logits.shape[-1])


def _layer_kv(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(keys, values) per layer, each [batch, kv_heads, seq, head_dim], of a DynamicCache."""
    return [(layer.keys, layer.values) for layer in cache.layers]


class HFPolicy(Policy):
    """A causal LM + tokenizer with the project's tool-aware ChatML template.

    Public surface: `prompt_ids`, `completion_ids`, `generate`, `group_logprobs`,
    `naive_group_logprobs`, `decode`, `save`, `clear_prefix_cache`; attributes `model`, `tokenizer`,
    `end_of_turn_id`, `device`, `name`, `engine` (default sampling engine), `prefix_cache` (its
    `stats` count reused vs computed prompt tokens). Build one with `pivot_algo.policy.load_policy(spec)`.
    """

    def __init__(self, model: torch.nn.Module, tokenizer: Any, *, name: str = "", engine: str = "shared_prefix",
                 prefix_cache_entries: int = 8, prefix_cache_bytes: int = 512 << 20) -> None:
        ct.install_template(tokenizer)
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        if engine not in ENGINES:
            raise PolicyError(f"unknown sampling engine {engine!r}; use one of {ENGINES}")
        # The shared-prefix engine needs plain full causal attention; other models keep the legacy one.
        self.engine = engine if supports_shared_decode(model) else "legacy"
        self.prefix_cache = PrefixKVCache(prefix_cache_entries, prefix_cache_bytes)
        self.end_of_turn_id: int = tokenizer.convert_tokens_to_ids(ct.END_OF_TURN)
        pad = tokenizer.pad_token_id
        # The pad id only fills positions that are masked out of every result; any valid id works.
        self.pad_id: int = int(pad if pad is not None else self.end_of_turn_id)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------ chat template
    def prompt_ids(self, messages: Sequence[dict], tools: Sequence[dict] | None = None) -> list[int]:
        return ct.prompt_ids(self.tokenizer, messages, tools)

    def completion_ids(self, messages: Sequence[dict], assistant: dict, tools: Sequence[dict] | None = None) -> list[int]:
        return ct.prompt_and_completion_ids(self.tokenizer, messages, assistant, tools)[1]

    def render(self, messages: Sequence[dict], tools: Sequence[dict] | None = None, *,
               add_generation_prompt: bool = False) -> str:
        """The conversation as text (for logs and debugging)."""
        return ct.render(self.tokenizer, messages, tools, add_generation_prompt=add_generation_prompt)

    # ------------------------------------------------------------------ sampling
    def use_sampler(self, name: str) -> None:
        """Select the sampling path for later `generate` calls: "shared_prefix" (the default engine
        with prefix reuse across calls) or "legacy" (the legacy engine, no reuse: the sampler as it
        was). The samples are the same; `pivotrl run ... sampler=legacy` times the old path.
        A model without full causal attention keeps the legacy engine under "shared_prefix"."""
        if name == "legacy":
            self.engine, self.prefix_cache = "legacy", PrefixKVCache(0)
        elif name == "shared_prefix":  # models it cannot serve keep the legacy engine (as in __init__)
            self.engine = "shared_prefix" if supports_shared_decode(self.model) else "legacy"
            if self.prefix_cache.max_entries == 0:
                self.prefix_cache = PrefixKVCache()
        else:
            raise PolicyError(f"unknown sampler {name!r}; use 'shared_prefix' or 'legacy'")

    def clear_prefix_cache(self) -> None:
        """Drop every stored prompt KV (needed only after writing weights through `param.data`)."""
        self.prefix_cache.clear()

    @torch.no_grad()
    def generate(self, prompts: Sequence[list[int]], n: int, *, max_new_tokens: int, temperature: float = 1.0,
                 top_p: float = 1.0, seed: int | None = None, seeds: Sequence[int] | None = None,
                 max_batch_tokens: int = 32768, engine: str | None = None, prefix_reuse: bool = True
                 ) -> list[list[Completion]]:
        """Sample `n` completions per prompt, stopping at `<|im_end|>` ("stop", token included) or after
        `max_new_tokens` ("length"). `engine` overrides `self.engine` for this call.

        Seeding is per (prompt, sample): sample j of prompt i draws its random numbers from its own
        generator, seeded from (prompt seed i, j) (Gumbel-max sampling, `batching.RowNoise`). Prompt seed i is `seeds[i]` when given, else
        derived from (`seed`, i) with prompt 0 getting `seed` itself (so `generate([p], seed=s)`
        equals p's samples in `generate([..., p, ...], seeds=[..., s, ...])`), else drawn from torch's
        global generator. So the samples of a prompt do not depend on the engine, on prefix reuse,
        on which other prompts share the call, or on how the call is chunked (tested).

        Shared-prefix engine: prompts that are token prefixes of another prompt of the call (earlier
        turns of one trajectory) share that prompt's KV: it is prefilled once (reusing the longest
        stored prefix when `prefix_reuse`) with next-token logits at every member prompt's end, and
        all their rows decode together against that one copy. Rows that finished leave the batch.
        Memory: a chunk holds at most `max_batch_tokens` KV positions (distinct roots' prompt tokens
        + rows x max_new_tokens; legacy: rows x (longest prompt + max_new_tokens), its merged cache).
        Log-probs: see the module docstring."""
        engine = self.engine if engine is None else engine
        if engine not in ENGINES:
            raise PolicyError(f"unknown sampling engine {engine!r}; use one of {ENGINES}")
        if engine == "shared_prefix" and not supports_shared_decode(self.model):
            raise PolicyError(f"the shared_prefix engine needs full causal attention; {type(self.model).__name__} "
                              "has sliding-window / soft-capped / mixed attention: use engine='legacy'")
        if n < 1 or max_new_tokens < 1:
            raise PolicyError(f"generate needs n >= 1 and max_new_tokens >= 1, got n={n}, max_new_tokens={max_new_tokens}")
        if temperature < 0 or not 0 < top_p <= 1:
            raise PolicyError(f"temperature must be >= 0 and top_p in (0, 1]; got temperature={temperature}, top_p={top_p}")
        if seeds is not None and len(seeds) != len(prompts):
            raise PolicyError(f"seeds needs one seed per prompt: got {len(seeds)} seeds for {len(prompts)} prompts")
        if not prompts:
            return []
        for i, p in enumerate(prompts):
            if len(p) == 0:
                raise PolicyError(f"prompts[{i}] is empty; build prompts with policy.prompt_ids(messages, tools)")
        if seeds is None:
            seeds = ([prompt_seed(seed, i) for i in range(len(prompts))] if seed is not None
                     else torch.randint(0, 2**31 - 1, (len(prompts),)).tolist())
        noise = RowNoise(seeds, n)  # one random stream per row
        if engine == "shared_prefix":
            chunks = shared_chunks(prompts, n, max_new_tokens, max_batch_tokens)
        else:
            chunks = legacy_chunks(prompts, n, max_new_tokens, max_batch_tokens)
        results: list[list[Completion] | None] = [None] * len(prompts)
        was_training = self.model.training
        self.model.eval()
        try:
            for chunk in chunks:
                chunk_prompts = [prompts[i] for i in chunk]
                draw = _RowDraw(noise, [i * n + j for i in chunk for j in range(n)], temperature)
                if engine == "shared_prefix":
                    groups = self._decode_shared(chunk_prompts, n, max_new_tokens, temperature, top_p, draw, prefix_reuse)
                else:
                    groups = self._decode_legacy(chunk_prompts, n, max_new_tokens, temperature, top_p, draw, prefix_reuse)
                for i, group in zip(chunk, groups):
                    results[i] = group
        finally:
            self.model.train(was_training)
        return [g for g in results if g is not None]

    def _prefill(self, prompts: Sequence[list[int]], prefix_reuse: bool
                 ) -> tuple[list[list[tuple[torch.Tensor, torch.Tensor]]], list[torch.Tensor]]:
        """Per prompt: its KV per layer ([1, kv_heads, len, head_dim]) and next-token logits [1, V]."""
        if prefix_reuse:
            prefills = [self.prefix_cache.prefill(self.model, p) for p in prompts]
            return [f.kv for f in prefills], [f.logits for f in prefills]
        per_prompt_kv, last_logits = [], []
        for p in prompts:  # from scratch, batch 1, no padding
            out = self.model(input_ids=torch.tensor([p], device=self.device), use_cache=True, logits_to_keep=1,
                             **with_cache(self.model, _cache_cls()(config=self.model.config)))
            per_prompt_kv.append(_layer_kv(output_cache(out)))
            last_logits.append(out.logits[:, -1].float())
        return per_prompt_kv, last_logits

    def _decode_shared(self, prompts: Sequence[list[int]], n: int, max_new_tokens: int, temperature: float,
                       top_p: float, draw: _RowDraw, prefix_reuse: bool) -> list[list[Completion]]:
        """Shared-prefix engine: one KV copy per root prompt, row tokens in a preallocated buffer,
        finished rows dropped from the batch."""
        dev = self.device
        roots = prompt_roots(prompts)  # root prompt index -> member prompt indices (shortest first)
        cache = self.prefix_cache if prefix_reuse else PrefixKVCache(0)
        prefixes, first_logits, order = [], [], []
        for root, members in roots.items():
            pre = cache.prefill(self.model, prompts[root], [len(prompts[m]) - 1 for m in members])
            prefixes.append(pre.kv)
            first_logits.append(pre.logits.repeat_interleave(n, dim=0))
            order.extend(members)
        # Decode rows grouped by root; `row_ids[r]` is the row's place in the caller's order.
        row_ids = torch.tensor([m * n + j for m in order for j in range(n)], device=dev)
        logits = torch.cat(first_logits)  # [B, V]
        row_len = torch.tensor([len(prompts[m]) for m in order], device=dev).repeat_interleave(n)
        active = row_ids.tolist()  # chunk rows still decoding, in decode order
        rows = len(row_ids)
        state = SharedPrefixDecode(prefixes, [len(m) * n for m in roots.values()], row_len,
                                   max(1, max_new_tokens - 1))  # the last sampled token is never fed back
        tokens = torch.full((rows, max_new_tokens), self.pad_id, dtype=torch.long, device=dev)
        logps = torch.zeros(rows, max_new_tokens, dtype=torch.float32, device=dev)
        with shared_decode_attention(self.model):
            for step in range(max_new_tokens):
                tok, lp = self._sample(logits, temperature, top_p, draw(active, logits))
                tokens[row_ids, step] = tok
                logps[row_ids, step] = lp
                if step == max_new_tokens - 1:
                    break
                done = tok == self.end_of_turn_id
                if bool(done.any()):
                    if bool(done.all()):
                        break
                    keep = (~done).nonzero().squeeze(-1)
                    state.keep(keep)
                    tok, row_ids, row_len = tok[keep], row_ids[keep], row_len[keep]
                    active = [active[k] for k in keep.tolist()]
                out = self.model(input_ids=tok[:, None], position_ids=(row_len + step)[:, None], use_cache=False,
                                 pivot_decode=state)
                state.step()
                logits = out.logits[:, -1].float()
        return self._completions(len(prompts), n, tokens, logps)

    def _decode_legacy(self, prompts: Sequence[list[int]], n: int, max_new_tokens: int, temperature: float,
                       top_p: float, draw: _RowDraw, prefix_reuse: bool) -> list[list[Completion]]:
        """The engine as it was: prompt KV copied into every row, left-padded into one merged cache."""
        dev = self.device

        # 1. Prefill every prompt once (batch 1, no padding).
        lengths = [len(p) for p in prompts]
        max_len = max(lengths)
        per_prompt_kv, last_logits = self._prefill(prompts, prefix_reuse)

        # 2. Merge into one cache of B = len(prompts) * n rows, prompts left-padded to max_len.
        merged = []
        for layer in range(len(per_prompt_kv[0])):
            ks, vs = [], []
            for kv, length in zip(per_prompt_kv, lengths):
                k, v = kv[layer]
                pad = max_len - length
                ks.append(F.pad(k, (0, 0, pad, 0)).expand(n, -1, -1, -1))
                vs.append(F.pad(v, (0, 0, pad, 0)).expand(n, -1, -1, -1))
            merged.append((torch.cat(ks), torch.cat(vs)))
        del per_prompt_kv
        cache = _cache_cls()(ddp_cache_data=merged)
        rows = len(prompts) * n
        row_len = torch.tensor(lengths, device=dev).repeat_interleave(n)  # true prompt length of each row
        attn = (torch.arange(max_len, device=dev)[None, :] >= (max_len - row_len)[:, None]).long()
        logits = torch.cat(last_logits).repeat_interleave(n, dim=0)  # [B, V]

        tokens = torch.empty(rows, 0, dtype=torch.long, device=dev)
        logps = torch.empty(rows, 0, dtype=torch.float32, device=dev)
        finished = torch.zeros(rows, dtype=torch.bool, device=dev)
        for step in range(max_new_tokens):
            tok, lp = self._sample(logits, temperature, top_p, draw(range(rows), logits))
            tok = torch.where(finished, torch.full_like(tok, self.pad_id), tok)
            tokens = torch.cat([tokens, tok[:, None]], dim=1)
            logps = torch.cat([logps, lp[:, None]], dim=1)
            newly_done = ~finished & (tok == self.end_of_turn_id)
            finished = finished | newly_done
            if bool(finished.all()) or step == max_new_tokens - 1:
                break
            attn = torch.cat([attn, torch.ones(rows, 1, dtype=attn.dtype, device=dev)], dim=1)
            out = self.model(input_ids=tok[:, None], attention_mask=attn, position_ids=(row_len + step)[:, None],
                             use_cache=True, **with_cache(self.model, cache))
            cache = output_cache(out)
            logits = out.logits[:, -1].float()
        return self._completions(len(prompts), n, tokens, logps)

    def _completions(self, num_prompts: int, n: int, tokens: torch.Tensor, logps: torch.Tensor
                     ) -> list[list[Completion]]:
        """Cut each row at its first <|im_end|> (kept) and group rows by prompt."""
        results: list[list[Completion]] = []
        tok_list, lp_list = tokens.tolist(), logps.tolist()
        for i in range(num_prompts):
            group = []
            for r in range(i * n, (i + 1) * n):
                ids, lps = tok_list[r], lp_list[r]
                if self.end_of_turn_id in ids:
                    cut = ids.index(self.end_of_turn_id) + 1
                    ids, lps, reason = ids[:cut], lps[:cut], "stop"
                else:
                    reason = "length"
                group.append(Completion(text=self.decode(ids), token_ids=ids, logprobs=lps, finish_reason=reason))
            results.append(group)
        return results

    @staticmethod
    def _sample(logits: torch.Tensor, temperature: float, top_p: float,
                gumbel: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """One token per row and its log-prob under the distribution it was drawn from: the argmax
        of log-probs + the row's Gumbel noise (`batching.RowNoise`), a draw from softmax(logp)."""
        if temperature == 0 or gumbel is None:
            tok = logits.argmax(dim=-1)
            return tok, torch.zeros(tok.shape, dtype=torch.float32, device=logits.device)
        logp = torch.log_softmax(logits / temperature, dim=-1)
        if top_p < 1.0:
            sorted_lp, order = logp.sort(dim=-1, descending=True)
            cum = sorted_lp.exp().cumsum(dim=-1)
            drop_sorted = (cum - sorted_lp.exp()) >= top_p  # mass before this token already reaches top_p
            drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
            logp = torch.log_softmax(logp.masked_fill(drop, float("-inf")), dim=-1)
        tok = (logp + gumbel.to(logp.device)).argmax(dim=-1)  # a dropped token (-inf) is never chosen
        return tok, logp.gather(-1, tok[:, None]).squeeze(-1)

    # ------------------------------------------------------------------ scoring
    def _pad_completions(self, completions: Sequence[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        if not completions or any(len(c) == 0 for c in completions):
            raise PolicyError("group_logprobs needs at least one completion and no empty completion "
                              f"(lengths: {[len(c) for c in completions]})")
        width = max(len(c) for c in completions)
        ids = torch.full((len(completions), width), self.pad_id, dtype=torch.long, device=self.device)
        mask = torch.zeros(len(completions), width, dtype=torch.float32, device=self.device)
        for i, c in enumerate(completions):
            ids[i, : len(c)] = torch.tensor(c, dtype=torch.long)
            mask[i, : len(c)] = 1.0
        return ids, mask

    @staticmethod
    def _token_logprobs(logits: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
        """log softmax(logits / temperature)[target], computed without keeping a [.., V] log-prob tensor."""
        if temperature <= 0:
            raise PolicyError(f"scoring needs temperature > 0, got {temperature}")
        logits = logits.float() / temperature
        return logits.gather(-1, targets[..., None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)

    def group_logprobs(self, prompt: list[int], completions: Sequence[list[int]], *,
                       temperature: float = 1.0) -> GroupLogprobs:
        """Per-token log-probs of G completions of one prompt, differentiable; the prompt runs once.

        Shapes: `logprobs` and `mask` are [G, T], T the longest completion; padded positions hold 0.
        Runs under the caller's grad mode (wrap in `torch.no_grad()` for old-policy log-probs)."""
        if len(prompt) == 0:
            raise PolicyError("group_logprobs needs a non-empty prompt (policy.prompt_ids(messages, tools))")
        ids, mask = self._pad_completions(completions)
        g, width = ids.shape
        plen = len(prompt)
        dev = self.device
        out = self.model(input_ids=torch.tensor([prompt], device=dev), use_cache=True, logits_to_keep=1,
                         **with_cache(self.model, _cache_cls()(config=self.model.config)))
        first = out.logits[:, -1:].expand(g, -1, -1)  # predicts completion token 0 for every row
        logits = first
        if width > 1:
            # The prefix's keys/values, shared by the G rows (expand is a view; its backward sums over rows).
            shared = _cache_cls()(ddp_cache_data=[(k.expand(g, -1, -1, -1), v.expand(g, -1, -1, -1))
                                                  for k, v in _layer_kv(output_cache(out))])
            # Right padding: a real token never attends to a pad (pads come after it under the causal
            # mask), so no attention mask is needed; positions continue after the prompt.
            positions = torch.arange(plen, plen + width - 1, device=dev)[None, :].expand(g, -1)
            rest = self.model(input_ids=ids[:, :-1], position_ids=positions, use_cache=True,
                              **with_cache(self.model, shared))
            logits = torch.cat([first, rest.logits], dim=1)
        lp = self._token_logprobs(logits, ids, temperature) * mask
        return GroupLogprobs(logprobs=lp, mask=mask)

    def naive_group_logprobs(self, prompt: list[int], completions: Sequence[list[int]], *,
                             temperature: float = 1.0) -> GroupLogprobs:
        """Reference implementation of `group_logprobs`: each row is prompt + completion, run in full
        (the prompt is recomputed G times). Same result, G times the prefix compute."""
        if len(prompt) == 0:
            raise PolicyError("naive_group_logprobs needs a non-empty prompt")
        ids, mask = self._pad_completions(completions)
        g, width = ids.shape
        prefix = torch.tensor([prompt], device=self.device).expand(g, -1)
        full = torch.cat([prefix, ids], dim=1)[:, :-1]  # the last token predicts nothing we score
        out = self.model(input_ids=full, use_cache=False, logits_to_keep=width)
        lp = self._token_logprobs(out.logits, ids, temperature) * mask
        return GroupLogprobs(logprobs=lp, mask=mask)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> None:
        """Write weights (safetensors), tokenizer (with the tool-aware template) and a small metadata
        file, so that `load_policy(path)` / `HFPolicy.load(path)` restore this policy."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        model: Any = self.model  # a transformers PreTrainedModel
        model.save_pretrained(path, safe_serialization=True)
        self.tokenizer.save_pretrained(path)
        (path / POLICY_META).write_text(json.dumps({"format": 1, "name": self.name, "backend": "hf"}, indent=1))

    @classmethod
    def load(cls, path: str | os.PathLike, *, dtype: torch.dtype = torch.float32) -> HFPolicy:
        """Load a directory written by `save` (offline: nothing is downloaded)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(path)
        if not (path / POLICY_META).is_file():
            raise PolicyError(f"{path} is not a saved policy (no {POLICY_META}); write one with HFPolicy.save(path)")
        meta = json.loads((path / POLICY_META).read_text())
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype)
        return cls(model, tokenizer, name=meta.get("name", str(path)))
