"""One module per out-of-domain benchmark; each exposes `NAME` and `run(generate_fn, limit, seed)`.
`common.py` holds what they share (items, verdicts, results, batched generation)."""

from pivot_algo.eval.ood_tasks import bfcl_single, humaneval, ifbench, math_word

BENCHMARKS = {m.NAME: m.run for m in (ifbench, humaneval, math_word, bfcl_single)}

__all__ = ["BENCHMARKS"]
