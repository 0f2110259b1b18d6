"""BFCL single-turn function calling, scored by the tool-use domain's BFCL checker.

The tool-use domain owns BFCL loading and its AST-style checker (`pivot_envs.domains.tooluse.
single_turn`: `load_items(category, limit)`, `score_item(item, action)`, and the tool-call parser
`pivot_envs.parsing.parse_action`). This module only turns those items into EvalItems, so that they
are generated in one batch like the other benchmarks, and their (correct, reason) into verdicts. The
domain module is imported lazily: when it is missing, the benchmark is reported unavailable.

Default categories: BFCL v4's four non-live relevance categories (simple_python, multiple, parallel,
parallel_multiple). `irrelevance` is left out by default because a model that never calls a tool
scores 100% on it, which would flatter a base model that cannot call tools at all.
"""

from __future__ import annotations

import importlib
import logging
import math
import random
from collections.abc import Sequence
from typing import Any

from pivot_algo.eval.ood_tasks.common import (
    BenchmarkResult,
    EvalItem,
    GenerateFn,
    ItemVerdict,
    package_dir,
    score_items,
)

logger = logging.getLogger(__name__)

NAME = "bfcl_single"
DOMAIN_MODULE = "pivot_envs.domains.tooluse.single_turn"
DEFAULT_CATEGORIES: tuple[str, ...] = ("simple_python", "multiple", "parallel", "parallel_multiple")
PARSER = "hermes"  # `<tool_call>{json}</tool_call>`, the project's default tool-call format


def _load_domain() -> tuple[Any, Any] | str:
    """(single_turn module, parse_action) or the reason they cannot be used."""
    if package_dir("bfcl_eval") is None:
        return "BFCL data not installed: pip install --no-deps bfcl-eval"
    try:
        module = importlib.import_module(DOMAIN_MODULE)
        from pivot_envs.parsing import parse_action
    except ImportError as e:
        return f"{DOMAIN_MODULE} is not available ({e})"
    missing = [fn for fn in ("load_items", "score_item") if not callable(getattr(module, fn, None))]
    if missing:
        return f"{DOMAIN_MODULE} lacks {', '.join(missing)}"
    return module, parse_action


def run(generate_fn: GenerateFn, limit: int | None, seed: int,
        categories: Sequence[str] = DEFAULT_CATEGORIES) -> BenchmarkResult:
    """`limit` is the total over categories, split evenly (ceil); entries are sampled with `seed`
    inside each category."""
    domain = _load_domain()
    if isinstance(domain, str):
        return BenchmarkResult.unavailable(NAME, domain)
    module, parse_action = domain
    per_category = None if limit is None else max(1, math.ceil(limit / len(categories)))
    items: list[EvalItem] = []
    for category in categories:
        entries = module.load_items(category)
        random.Random(f"{seed}/{category}").shuffle(entries)
        for entry in entries[:per_category] if per_category is not None else entries:
            items.append(EvalItem(item_id=entry["id"], messages=entry["messages"], tools=entry["tools"], payload=entry))
    if limit is not None:
        items = items[:limit]

    def score(item: EvalItem, output: str) -> ItemVerdict:
        action = parse_action(output, PARSER, item.tools)
        correct, reason = module.score_item(item.payload, action)
        return ItemVerdict(item.item_id, bool(correct), reason, output=output)

    verdicts = score_items(NAME, generate_fn, items, score)
    by_category: dict[str, tuple[int, int]] = {}
    for item, verdict in zip(items, verdicts):
        cat = item.payload["category"]
        right, n = by_category.get(cat, (0, 0))
        if verdict.correct is not None:
            by_category[cat] = (right + int(verdict.correct), n + 1)
    note = "; ".join(f"{c} {r}/{n}" for c, (r, n) in by_category.items())
    return BenchmarkResult.from_verdicts(NAME, verdicts, metric="call accuracy (BFCL AST)", note=note)
