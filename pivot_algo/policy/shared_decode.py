"""Decoding many sample rows that share a prompt, without copying the prompt's keys/values per row.

`HFPolicy.generate` decodes n samples of each prompt together. The old way copied the prompt's KV
cache into every row and let the model's own attention (SDPA) read all n copies at every step; on
CPU that copy and those reads cost about as much as the weights themselves. Here each prompt's KV
(the *prefix*, one copy, shape [1, kv_heads, P, head_dim] per layer) stays shared, and only the
tokens generated so far live per row, in a buffer allocated once for the whole decode.

How it plugs into `transformers`: a decode step calls the model's own forward with `cache=None`,
explicit `position_ids` and a keyword `pivot_decode=<SharedPrefixDecode>`, while the model's
attention implementation is switched to `ATTENTION_NAME` (registered in transformers'
`AttentionInterface`, the supported way to add an attention kernel). Every attention layer then
hands its query and the current token's key/value to `shared_prefix_attention`, which appends the
key/value to the row buffer and attends over prefix + row tokens. For each prompt, the scores
against its prefix are one batched matmul for all of its rows (the prefix is read once per step,
not n times); the softmax runs over prefix and row scores together, so the result is ordinary
causal attention over the whole sequence.

Prompts nested in one another (turns of one trajectory) share one prefix: the root's KV, with a
-inf bias on the positions past a row's own prompt. Rows that finish are dropped (`keep`).

Only models whose attention is plain full causal attention qualify (no sliding window, no soft
cap, no per-layer attention types): `supports_shared_decode(model)` says so, and `HFPolicy` falls
back to the old path otherwise.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch

ATTENTION_NAME = "pivotrl_shared_prefix"
DECODE_KWARG = "pivot_decode"


class SharedPrefixDecode:
    """The per-call decode state: the prefix KV of each *root* prompt and the rows' generated-token KV.

    A root is a prompt that no other prompt of the call extends; every prompt of the call is a token
    prefix of exactly one root (turn k of a trajectory is a prefix of turn k+1), so one KV copy of
    the root serves the rows of all its prompts: a row of a prompt of length L attends to the
    root's first L positions only (a -inf bias on the rest). Rows are grouped by root, contiguously:
    `root_rows[r]` rows of root r, in order. `prefixes[r][layer]` is (keys, values), each
    [1, kv_heads, P_r, head_dim]; `row_prompt_len` [rows] is each row's prompt length.
    `step()` must be called after each forward (all layers wrote the same position); `keep(index)`
    drops every row not in `index` (finished rows stop costing compute)."""

    def __init__(self, prefixes: Sequence[Sequence[tuple[torch.Tensor, torch.Tensor]]], root_rows: Sequence[int],
                 row_prompt_len: torch.Tensor, max_tokens: int) -> None:
        if not prefixes or len(root_rows) != len(prefixes) or min(root_rows) < 1 or max_tokens < 1:
            raise ValueError("SharedPrefixDecode needs >= 1 root, >= 1 row per root and max_tokens >= 1")
        self.prefixes = [[(k[0], v[0]) for k, v in layers] for layers in prefixes]  # drop the batch dim of 1
        self.rows = int(sum(root_rows))
        if row_prompt_len.shape != (self.rows,):
            raise ValueError(f"row_prompt_len must have one length per row ({self.rows}), got {tuple(row_prompt_len.shape)}")
        k0, v0 = prefixes[0][0]
        kv_heads, head_dim, v_dim = k0.shape[1], k0.shape[-1], v0.shape[-1]
        layers = len(prefixes[0])
        self.keys = [k0.new_empty(self.rows, kv_heads, max_tokens, head_dim) for _ in range(layers)]
        self.values = [v0.new_empty(self.rows, kv_heads, max_tokens, v_dim) for _ in range(layers)]
        self.length = 0  # row tokens written (the same for every row: rows decode in lock-step)
        self._root_of_row = torch.repeat_interleave(torch.arange(len(root_rows)), torch.tensor(list(root_rows)))
        self._row_prompt_len = row_prompt_len.to("cpu")
        self._layout()

    def _layout(self) -> None:
        """Row range and prefix bias of each root with rows left (after construction or `keep`)."""
        self.groups: list[tuple[int, int, int, torch.Tensor | None]] = []  # (root, first row, end row, bias)
        counts = torch.bincount(self._root_of_row, minlength=len(self.prefixes)).tolist()
        start = 0
        for root, count in enumerate(counts):
            if count == 0:
                continue
            plen = self.prefixes[root][0][0].shape[1]
            lengths = self._row_prompt_len[start:start + count]
            bias = None
            if bool((lengths < plen).any()):  # rows of shorter prompts must not see the root's later tokens
                device = self.prefixes[root][0][0].device
                hidden = torch.arange(plen)[None, :] >= lengths[:, None]
                bias = torch.zeros(count, plen).masked_fill(hidden, float("-inf")).to(device)
            self.groups.append((root, start, start + count, bias))
            start += count
        self._bias_per_head: dict[tuple[int, int], torch.Tensor] = {}

    def query_bias(self, group_index: int, query_heads_per_kv: int) -> torch.Tensor | None:
        """The bias of group `group_index` repeated for each query head of a KV head: [rows * q, P]
        (built once per layout; every layer uses it)."""
        bias = self.groups[group_index][3]
        if bias is None:
            return None
        key = (group_index, query_heads_per_kv)
        if key not in self._bias_per_head:
            rows, plen = bias.shape
            self._bias_per_head[key] = bias[:, None, :].expand(rows, query_heads_per_kv, plen).reshape(-1, plen)
        return self._bias_per_head[key]

    def step(self) -> None:
        self.length += 1

    def keep(self, index: torch.Tensor) -> None:
        """Keep only rows `index` (ascending row numbers), e.g. the ones not finished yet."""
        cpu_index = index.to("cpu")
        self.keys = [k.index_select(0, index) for k in self.keys]
        self.values = [v.index_select(0, index) for v in self.values]
        self._root_of_row = self._root_of_row.index_select(0, cpu_index)
        self._row_prompt_len = self._row_prompt_len.index_select(0, cpu_index)
        self.rows = len(cpu_index)
        self._layout()


def shared_prefix_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            attention_mask: torch.Tensor | None, scaling: float | None = None,
                            dropout: float = 0.0, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """An `AttentionInterface` function for one decode step (query length 1).

    query [B, H, 1, D]; key/value [B, Hkv, 1, D] of the current token (rotary already applied).
    Returns ([B, 1, H, D], None) like transformers' SDPA function."""
    state: SharedPrefixDecode | None = kwargs.get(DECODE_KWARG)
    if state is None or query.shape[2] != 1:
        raise RuntimeError(f"{ATTENTION_NAME} attention only runs decode steps of HFPolicy.generate "
                           "(one token per row, with its decode state); use sdpa otherwise")
    layer = int(module.layer_idx)  # type: ignore[arg-type]
    rows, heads, _, dim = query.shape
    kv_heads = key.shape[1]
    group = heads // kv_heads  # query heads per key/value head (grouped-query attention)
    scale = dim ** -0.5 if scaling is None else scaling
    t = state.length
    state.keys[layer][:, :, t] = key[:, :, 0]
    state.values[layer][:, :, t] = value[:, :, 0]
    row_keys = state.keys[layer][:, :, : t + 1]  # [B, Hkv, t+1, D]
    row_values = state.values[layer][:, :, : t + 1]
    # Query head h reads key/value head h // group (the grouping `repeat_kv` uses). The scale is
    # applied to the (small) query, not to the scores.
    q = (query * scale).reshape(rows, kv_heads, group, dim)
    row_scores = torch.matmul(q, row_keys.transpose(-1, -2))  # [B, Hkv, group, t+1]
    outputs = []
    for gi, (root, a, b, _) in enumerate(state.groups):
        n = b - a
        pk, pv = state.prefixes[root][layer]  # [Hkv, P, D]
        qi = q[a:b].permute(1, 0, 2, 3).reshape(kv_heads, n * group, dim)
        bias = state.query_bias(gi, group)
        # [Hkv, n*group, P]: one read of the prefix for all rows (plus the length bias, fused).
        prefix_scores = (torch.bmm(qi, pk.transpose(-1, -2)) if bias is None
                         else torch.baddbmm(bias, qi, pk.transpose(-1, -2)))
        rs = row_scores[a:b].permute(1, 0, 2, 3).reshape(kv_heads, n * group, t + 1)
        peak = torch.maximum(prefix_scores.amax(-1, keepdim=True), rs.amax(-1, keepdim=True))
        prefix_w = prefix_scores.sub_(peak).exp_()  # in place: the scores are not needed again
        row_w = torch.exp(rs - peak)
        total = prefix_w.sum(-1, keepdim=True) + row_w.sum(-1, keepdim=True)
        out = torch.matmul(prefix_w, pv)  # [Hkv, n*group, D]
        row_w = row_w.reshape(kv_heads, n, group, t + 1).permute(1, 0, 2, 3)  # [n, Hkv, group, t+1]
        row_out = torch.matmul(row_w, row_values[a:b])  # [n, Hkv, group, D]
        out = out.reshape(kv_heads, n, group, dim).permute(1, 0, 2, 3) + row_out
        outputs.append(out / total.reshape(kv_heads, n, group, 1).permute(1, 0, 2, 3))
    attn = torch.cat(outputs) if len(outputs) > 1 else outputs[0]
    return attn.reshape(rows, 1, heads, dim), None


def _no_mask(*args: Any, **kwargs: Any) -> None:
    """Mask function for ATTENTION_NAME: decode steps attend to everything before them, so no mask."""
    return


_registered = False


def _register() -> None:
    global _registered
    if _registered:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(ATTENTION_NAME, shared_prefix_attention)
    AttentionMaskInterface.register(ATTENTION_NAME, _no_mask)
    _registered = True


def supports_shared_decode(model: torch.nn.Module) -> bool:
    """True when every attention layer of `model` is full causal attention that dispatches through
    transformers' AttentionInterface (Llama-family decoders: the tiny model, SmolLM2, Qwen2, ...)."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "_attn_implementation"):
        return False
    if getattr(config, "sliding_window", None) or getattr(config, "attn_logit_softcapping", None):
        return False
    layer_types = getattr(config, "layer_types", None)
    if layer_types and any(t != "full_attention" for t in layer_types):
        return False
    attn_layers = [m for m in model.modules() if hasattr(m, "layer_idx") and hasattr(m, "q_proj")]
    return bool(attn_layers) and len({m.layer_idx for m in attn_layers}) == len(attn_layers)


@contextlib.contextmanager
def shared_decode_attention(model: torch.nn.Module) -> Iterator[None]:
    """Switch `model`'s attention to `shared_prefix_attention` for the duration (decode steps only)."""
    _register()
    config: Any = model.config
    previous = config._attn_implementation
    config._attn_implementation = ATTENTION_NAME
    try:
        yield
    finally:
        config._attn_implementation = previous
