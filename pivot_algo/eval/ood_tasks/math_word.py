"""Grade-school math word problems, generated here with exact answers (GSM8K-style, multi-step).

Why generated: no PyPI package ships GSM8K-style problems with answers for offline use (checked:
`aviary-gsm8k` downloads its data at run time, `champ-dataset` is competition math with free-form
answers). So the problems come from a fixed set of templates filled by a seeded RNG: the same seed
gives the same problems, every answer is an integer computed from the same numbers, and every
intermediate step stays an integer (no rounding ambiguity).

Metric: exact match of the final number. The model is asked to end with `Answer: <number>`; the
extractor takes that line, else a GSM8K-style `#### <number>`, else the last number in the reply.
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Callable

from pivot_algo.eval.ood_tasks.common import (
    BenchmarkResult,
    EvalItem,
    GenerateFn,
    ItemVerdict,
    score_items,
)

NAME = "math"
DEFAULT_SIZE = 200  # problems in the generated set; `limit` takes a prefix of it

INSTRUCTION = ("Solve the following math word problem. Think step by step, then give the final answer on "
               "the last line in the form 'Answer: <number>'.\n\n{question}")

_NAMES = ("Ava", "Ben", "Chloe", "Diego", "Emma", "Farid", "Grace", "Hiro", "Isla", "Jonas", "Kira", "Liam")
_ITEMS = ("apples", "pencils", "stickers", "marbles", "cookies", "books", "stamps", "shells")


@dataclasses.dataclass(frozen=True)
class MathProblem:
    problem_id: str
    question: str
    answer: int


def _shopping(rng: random.Random) -> tuple[str, int]:
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    start, bags, per_bag, given = rng.randint(3, 40), rng.randint(2, 9), rng.randint(2, 12), rng.randint(1, 20)
    q = (f"{name} has {start} {item}. {name} buys {bags} bags with {per_bag} {item} in each bag, then gives "
         f"{given} {item} to a friend. How many {item} does {name} have now?")
    return q, start + bags * per_bag - given


def _wages(rng: random.Random) -> tuple[str, int]:
    name = rng.choice(_NAMES)
    rate, hours, days, spent = rng.randint(8, 30), rng.randint(2, 8), rng.randint(2, 6), rng.randint(5, 60)
    q = (f"{name} earns ${rate} per hour and works {hours} hours a day for {days} days. "
         f"Then {name} spends ${spent} on groceries. How many dollars does {name} have left from the pay?")
    return q, rate * hours * days - spent


def _boxes(rng: random.Random) -> tuple[str, int]:
    per_tray, trays, box = rng.randint(4, 12), rng.randint(2, 10), rng.choice((2, 3, 4, 6))
    per_tray = per_tray * box  # total divisible by the box size
    q = (f"A baker bakes {trays} trays of muffins with {per_tray} muffins on each tray. She packs all the "
         f"muffins into boxes of {box}. How many boxes does she fill?")
    return q, trays * per_tray // box


def _discount(rng: random.Random) -> tuple[str, int]:
    price, percent, qty = rng.randint(2, 40) * 20, rng.choice((10, 20, 25, 50)), rng.randint(2, 6)
    q = (f"A jacket costs ${price}. The store gives a {percent}% discount. How many dollars do {qty} jackets "
         f"cost after the discount?")
    return q, qty * price * (100 - percent) // 100


def _travel(rng: random.Random) -> tuple[str, int]:
    s1, h1, s2, h2 = rng.randint(30, 90), rng.randint(1, 5), rng.randint(20, 70), rng.randint(1, 4)
    q = (f"A train travels at {s1} km per hour for {h1} hours, then at {s2} km per hour for {h2} hours. "
         f"How many kilometers does it travel in total?")
    return q, s1 * h1 + s2 * h2


def _ages(rng: random.Random) -> tuple[str, int]:
    a, b = rng.sample(_NAMES, 2)
    age_b, times, years = rng.randint(3, 15), rng.randint(2, 4), rng.randint(2, 10)
    q = (f"{a} is {times} times as old as {b}. {b} is {age_b} years old. How old will {a} be in {years} years?")
    return q, times * age_b + years


def _sharing(rng: random.Random) -> tuple[str, int]:
    friends, each, extra = rng.randint(2, 8), rng.randint(3, 15), rng.randint(1, 9)
    item = rng.choice(_ITEMS)
    q = (f"A teacher has some {item}. After giving {each} {item} to each of {friends} students, she has "
         f"{extra} {item} left. How many {item} did she have at first?")
    return q, friends * each + extra


TEMPLATES: tuple[Callable[[random.Random], tuple[str, int]], ...] = (
    _shopping, _wages, _boxes, _discount, _travel, _ages, _sharing)


def generate_problems(n: int = DEFAULT_SIZE, seed: int = 0) -> list[MathProblem]:
    """`n` problems, templates in round-robin order, numbers drawn from Random(seed)."""
    rng = random.Random(seed)
    problems = []
    for i in range(n):
        question, answer = TEMPLATES[i % len(TEMPLATES)](rng)
        problems.append(MathProblem(f"math/{seed}/{i}", question, answer))
    return problems


_NUMBER = r"-?\$?\d[\d,]*(?:\.\d+)?"
_ANSWER_LINE = re.compile(r"answer\s*(?:is)?\s*[:=]?\s*\**\s*(" + _NUMBER + ")", re.IGNORECASE)
_HASHES = re.compile(r"####\s*(" + _NUMBER + ")")
_ANY_NUMBER = re.compile(_NUMBER)


def _to_number(text: str) -> float | None:
    cleaned = text.replace("$", "").replace(",", "")
    try:
        return float(cleaned)
    except ValueError:
        return None


def extract_final_number(output: str) -> float | None:
    """The final answer in a reply: the last `Answer: N`, else the last `#### N`, else the last number.
    None when the reply has no number."""
    for pattern in (_ANSWER_LINE, _HASHES, _ANY_NUMBER):
        found = pattern.findall(output)
        if found:
            return _to_number(found[-1])
    return None


def score_output(problem: MathProblem, output: str) -> ItemVerdict:
    got = extract_final_number(output)
    if got is None:
        return ItemVerdict(problem.problem_id, False, "no number in the reply", output=output)
    if got == problem.answer:
        return ItemVerdict(problem.problem_id, True, f"final answer {problem.answer}", output=output)
    return ItemVerdict(problem.problem_id, False, f"final answer {got:g}, expected {problem.answer}", output=output)


def run(generate_fn: GenerateFn, limit: int | None, seed: int) -> BenchmarkResult:
    problems = generate_problems(max(DEFAULT_SIZE, limit or 0), seed)
    chosen = problems if limit is None else problems[:limit]
    items = [EvalItem(p.problem_id, [{"role": "user", "content": INSTRUCTION.format(question=p.question)}], payload=p)
             for p in chosen]
    verdicts = score_items(NAME, generate_fn, items, lambda item, out: score_output(item.payload, out))
    return BenchmarkResult.from_verdicts(
        NAME, verdicts, metric="exact match (final number)",
        note=f"generated set (seed {seed}, {len(TEMPLATES)} templates): no offline GSM8K package exists")
