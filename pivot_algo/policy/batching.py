"""How one `HFPolicy.generate` call is laid out: per-row random numbers, shared prompt roots, chunks.

- **Seeds per (prompt, sample).** Row j of prompt i draws all its random numbers from its own
  generator, seeded from (prompt seed i, j) (`RowNoise`), so a prompt's samples do not depend on
  which other prompts share the call, on their order, or on how the call is chunked. Batching the states of a
  trajectory into one call therefore samples exactly what one call per state samples.
- **Roots.** Turn k of a trajectory renders as a token prefix of turn k+1. A prompt that is a prefix
  of another prompt of the call needs no KV of its own: it reads the first len(prompt) positions of
  the longest prompt extending it (its root).
- **Chunks** bound memory: a chunk's KV is its roots' prompt tokens plus rows x max_new_tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

_MASK64 = (1 << 64) - 1


def _mix(a: int, b: int) -> int:
    """A 64-bit hash of two integers (splitmix64 finaliser): cheap, the same in every process."""
    x = (a * 0x9E3779B97F4A7C15 + b + 1) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def prompt_seed(seed: int, index: int) -> int:
    """The seed of prompt `index` of a call seeded with `seed`; prompt 0 gets `seed` itself."""
    return seed if index == 0 else _mix(seed, index) & 0x7FFFFFFF


class RowNoise:
    """One random stream per row of a call: row i * n + j draws from a generator seeded from
    (seeds[i], j), and only when it samples a token, so its draws do not depend on the other rows.

    `gumbel(rows, vocab)` is the next step's Gumbel noise of those rows, [len(rows), vocab]: adding
    it to the log-probs and taking the argmax samples from them (the Gumbel-max trick). Unlike an
    inverse-CDF draw, whose outcome moves when any of the ~50k cumulative sums moves by a rounding
    error, the argmax only changes when two perturbed scores tie within that rounding, so engines
    whose logits differ in the last bits still sample the same tokens."""

    def __init__(self, seeds: Sequence[int], n: int) -> None:
        self.generators = []
        for s in seeds:
            for j in range(n):
                gen = torch.Generator()
                gen.manual_seed(_mix(int(s), j) & 0x7FFFFFFFFFFFFFFF)
                self.generators.append(gen)

    def gumbel(self, rows: Sequence[int], vocab: int) -> torch.Tensor:
        out = torch.empty(len(rows), vocab)
        for k, r in enumerate(rows):
            torch.rand(vocab, generator=self.generators[r], out=out[k])
        return out.log_().neg_().log_().neg_()  # -log(-log u); u = 0 gives -inf (never chosen)


def _is_prefix(short: Sequence[int], long: Sequence[int]) -> bool:
    return len(short) <= len(long) and list(long[: len(short)]) == list(short)


def prompt_roots(prompts: Sequence[Sequence[int]]) -> dict[int, list[int]]:
    """Root prompt index -> indices of the prompts it serves (itself included), shortest first.

    A prompt's root is the longest prompt of the call that extends it (ties: the first). Prompts
    are visited longest first, so every root is seen before the prompts it covers."""
    by_length = sorted(range(len(prompts)), key=lambda i: (-len(prompts[i]), i))
    roots: dict[int, list[int]] = {}
    for i in by_length:
        home = next((r for r in roots if _is_prefix(prompts[i], prompts[r])), None)
        roots.setdefault(i if home is None else home, []).append(i)
    return {r: sorted(members, key=lambda i: (len(prompts[i]), i)) for r, members in roots.items()}


def shared_chunks(prompts: Sequence[Sequence[int]], n: int, max_new_tokens: int, max_batch_tokens: int
                  ) -> list[list[int]]:
    """Prompt indices per chunk for the shared-prefix engine, greedy: roots in the caller's order of
    their first member, each root's prompts longest first, a new chunk when the next prompt would
    take the chunk past `max_batch_tokens` KV positions (n x max_new_tokens for its rows, plus its
    own length unless a prompt already in the chunk extends it). A root is split only when its
    prompts alone exceed the budget; each piece then has its own root."""
    chunks: list[list[int]] = []
    current: list[int] = []
    used = 0
    for members in sorted(prompt_roots(prompts).values(), key=min):
        for m in sorted(members, key=lambda i: (-len(prompts[i]), i)):
            shared = any(_is_prefix(prompts[m], prompts[c]) for c in current)
            cost = n * max_new_tokens + (0 if shared else len(prompts[m]))
            if current and used + cost > max_batch_tokens:
                chunks.append(current)
                current, used = [], 0
                cost = n * max_new_tokens + len(prompts[m])
            current.append(m)
            used += cost
    if current:
        chunks.append(current)
    return [sorted(c) for c in chunks]


def legacy_chunks(prompts: Sequence[Sequence[int]], n: int, max_new_tokens: int, max_batch_tokens: int
                  ) -> list[list[int]]:
    """Prompt indices per chunk for the legacy engine: greedy in order, rows x (longest prompt +
    max_new_tokens) <= max_batch_tokens (the size of its merged decode cache)."""
    chunks: list[list[int]] = [[]]
    longest = 0
    for i, p in enumerate(prompts):
        wider = max(longest, len(p))
        if chunks[-1] and (len(chunks[-1]) + 1) * n * (wider + max_new_tokens) > max_batch_tokens:
            chunks.append([])
            wider = len(p)
        chunks[-1].append(i)
        longest = wider
    return chunks
