"""The paper-table grid's configuration: the compared methods, `GridPreset` (everything a grid run
depends on; its hash names the cells), the named presets, the phase's task sets and the pipeline config
of a cell. Read pivot_algo/experiments/table.py first."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from pivot_algo import miniworld
from pivot_algo.config import RunConfig

RESULTS = Path("benchmarks") / "results" / "paper_table"
METHODS = ("base", "sft", "pivotrl", "pivotrl_paper", "pivotrl_exact_match", "pivotrl_random_turns",
           "pivotrl_null_reward", "e2e_grpo")
TRAINED = METHODS[1:]
LABELS = {"base": "base (pre-trained)", "sft": "SFT", "pivotrl": "PivotRL", "pivotrl_paper": "PivotRL, paper verifier",
          "pivotrl_exact_match": "PivotRL, exact match", "pivotrl_random_turns": "PivotRL, random turns",
          "pivotrl_null_reward": "PivotRL, shuffled rewards (null)",
          "e2e_grpo": "E2E-RL (GRPO)"}
# method -> (registered algorithm, env verifier, which profile its pivots come from)
ALGOS = {"sft": ("sft", "execution", None), "pivotrl": ("pivotrl", "execution", "execution"),
         "pivotrl_paper": ("pivotrl", "paper", "paper"),
         "pivotrl_exact_match": ("pivotrl_exact_match", "execution", "execution"),
         "pivotrl_null_reward": ("pivotrl_null_reward", "execution", "execution"),
         "pivotrl_random_turns": ("pivotrl_random_turns", "execution", None), "e2e_grpo": ("e2e_grpo", "execution", None)}
# The ablations run at PivotRL's rate: they ask what changes when one part of PivotRL changes.
RATE_OF = {"pivotrl_paper": "pivotrl", "pivotrl_exact_match": "pivotrl", "pivotrl_random_turns": "pivotrl",
           "pivotrl_null_reward": "pivotrl"}
SUITES = ("in_domain", "ood_group_a", "ood_tool")
WORLD_MODEL = {"hidden_size": 128, "intermediate_size": 344, "num_hidden_layers": 2, "num_attention_heads": 2,
               "num_key_value_heads": 2}
"""The world's model: 2 layers are enough to copy a number (one attention offset, see miniworld.show),
~4x faster per step than the 4-layer test model."""


LONG_PRETRAIN = {"group_a": 1000, "tool": 400, "group_b": 0, "report": 1000, "tool_short": 1000, "max_horizon": 16}
"""The horizon sweep's broad mix: the default one with group A and tool-use conversations of 2..16 operations."""


@dataclasses.dataclass
class GridPreset:
    """Everything a grid run depends on; its hash names the cells (seeds and methods excepted)."""

    phase: str = "test"
    """Task seed ranges: "dev" while designing the world and choosing rates, "test" for the final table."""
    seeds: tuple[int, ...] = (0, 1, 2)
    methods: tuple[str, ...] = METHODS
    model: dict = dataclasses.field(default_factory=lambda: dict(WORLD_MODEL))
    """Overrides of the tiny model's config (pivot_algo/policy/tiny.py TINY_CONFIG)."""
    pretrain: dict = dataclasses.field(default_factory=lambda: {"group_a": 1000, "tool": 400, "group_b": 0,
                                                                "report": 1000, "tool_short": 1000})
    """The base's broad mix (miniworld.PretrainMix), trained for `pretrain_steps` on a full schedule: the
    report-only and one-call tool tasks supervise copying densely (without them the copy circuit formed at
    step ~300, ~500 or never, by seed). No group B here: the base meets its target domain in stage 2.
    World v12 raised the one-call tool tasks from 400 to 1000: copying the report out of a tool response is
    another attention offset than out of a user message (the response ends in `</tool_response>`), and with
    400 a test seed's three stage-1 draws all called the tool right and then reported x with one digit taken
    from the neighbouring position ("x = 6797" -> "6777"; tool use 12-14%)."""
    pretrain_steps: int = 1200
    pretrain_lr: float = 1e-3
    """Peak rate of stage 1's cosine schedule. World v13 lowered it from 3e-3: at 3e-3 the copy circuit did
    not form in 6 of 14 dev draws of v12 (loss stuck at 0.2-0.7; dev seed 7 failed all three draws); one
    draw per seed at 1e-3 (benchmarks/results/paper_table/stage1-probe/) formed it on all 6 seeds tried,
    dev seed 7's failed initialisation included, by step ~250-600."""
    stage1_draws: int = 3
    """Stage 1 draws a fresh initialisation while group A or tool use (`select_tasks // 4` select tasks
    each) ends below `select_ood_min`, at most this many draws; the best is kept (bases.pretrain_broad)."""
    pretrain_batch: int = 16
    """Sequences per pre-training step (both stages)."""
    exposure_tasks: int = 60
    exposure_share: float = 0.25
    exposure_lr: float = 5e-5
    exposure_steps: int = 600
    """Stage 2, a little of the target domain: `exposure_tasks` group-B pre-training conversations make
    `exposure_share` of each batch (the rest comes from the broad mix, so that the out-of-domain skills are
    rehearsed), at a constant low rate, for at most `exposure_steps` steps. (With half of each batch, one
    dev base lost group A from 100% to 66% by the time it reached the target: "add N twice" answers
    leaked into "add N".) The rate went from 1.5e-4 to 5e-5 with stage 1's lower peak rate (world v13):
    from those broad models, 1.5e-4 reached the target in 15-35 steps, and between two checks 5 steps apart
    in-domain success jumped 5.5% -> 50% (dev seed 1), so the checkpoint closest to 25% was at 5.5% (1.5%
    held out), outside the acceptance band; at 1.5e-4 v12's bases had needed 55-135 steps."""
    rehearse_a_share: float = 0.5
    """Share of each stage-2 batch drawn from the broad mix's group-A conversations alone (on top of the
    broad share's own group A), so that "add N" is rehearsed right beside "add N twice". Without it
    (world v13 as first checked) learning "add N twice" broke "add N" for a while: checked after every
    step, dev seeds 3 and 5 crossed the 10-40% band with group A at 52-76% and recovered only past 50% in
    domain (benchmarks/results/paper_table/stage2-probe/); with a quarter of each batch, seeds 3 and 5 kept
    group A at >= 86%, with half at >= 92% (stage2-rehearsal/)."""
    base_target: float = 0.25
    """Where stage 2 stops: greedy in-domain episode success. Competence in domain forms abruptly, at a
    step that depends on the seed and on the torch thread count (log.jsonl: bases of one fixed mix and
    step count gave 0-27% in domain by seed, 1-7% with 2 threads; mid-schedule checkpoints swing from 9%
    to 72% in 5 steps), so no fixed recipe puts every base in the acceptance band (10-40%). Stage 2 is
    evaluated every `select_every` steps on in-domain tasks of their own seed range ("select", never a
    validation or evaluation task) and stops at the first eligible checkpoint whose success reaches the
    target; the base is the eligible checkpoint closest to it (see `select_weakest_min`). The target is the
    middle of the band and checks come every 5 steps since world v11: with 20% and checks every 10 steps, two
    dev bases jumped 10% -> 38% and 12% -> 30% between checks and the rule kept 10% and 12%, the band's edge."""
    select_weakest_min: float = 0.01
    """Eligible: every in-domain operation right in at least this share of samples at its turns
    (temperature 1, `select_samples` per turn of `select_tasks // 2` tasks), and group A and tool use kept. In world
    v9 a base reached 25% of episodes on the easier operation alone while its "times" turns were right
    in 1% of samples, so neither RL method could learn them (no pivot, no reward). Since v10 every
    in-domain task has a "times", so greedy success already implies it; the gate stays as a floor. (A
    higher one binds late: greedy success jumps 14% -> 43% in 10 steps while "times" is right in 3-4% of
    samples, since the right answer can be the mode with little mass.)"""
    select_every: int = 5
    select_every_rising: int = 1
    """Checks come every `select_every` steps while the last one solved no in-domain task, then every
    `select_every_rising` steps: with group A rehearsed, dev seed 5 still went 0.5% -> 41% between two
    checks 5 steps apart."""
    select_tasks: int = 200
    select_samples: int = 4
    select_ood_min: float = 0.9
    """A stage-2 checkpoint may be the base only if it still solves this share of the group-A and of the
    tool-use "select" tasks (select_tasks // 4 of each); among those, the one closest to the target. (Tool
    use joined the guard in world v11: a v10 dev base kept group A and had lost tool use, 1%, so its
    tool-use retention measured nothing.)"""
    horizon: int | None = None
    """Operations per in-domain task (None: 2 or 3); the horizon sweep sets it."""
    base_horizon: int | None = None
    """The horizon of the tasks stage 2 selects the base on (None: `horizon`). The long presets fix it, so
    every horizon of the sweep starts from the same base per seed (the same per-turn skill; only the number
    of operations per task changes) instead of a base tuned to each horizon's own success target."""
    train_tasks: int = 64
    """In-domain (group B) training trajectories shared by every method."""
    eval_in: int = 200
    eval_ood: int = 100
    """Held-out tasks per out-of-domain suite (group A, tool use)."""
    val_in: int = 60
    val_ood: int = 30
    """Validation tasks per suite for the curves (own seed range, never the held-out tasks)."""
    lrs: dict = dataclasses.field(default_factory=lambda: {"sft": 1e-4, "pivotrl": 3e-5, "e2e_grpo": 1e-4})
    """Learning rate per trained method (ablations and the null control use PivotRL's), chosen on dev by
    `pivotrl table --preset dev --methods base,sft,pivotrl,e2e_grpo --lr-grid 3e-5,1e-4,3e-4` on world v13
    with stage-2 rehearsal (4 dev seeds; the best mean in-domain validation plateau;
    benchmarks/results/paper_table/dev-rates/rates.md). The first test-phase run used the rates chosen on
    world v11 (SFT 3e-4, PivotRL 1e-4, E2E-RL 1e-4; dev-v11-rates/), kept in full-v11-rates/."""
    warmup_steps: int = 10
    max_steps: int = 150
    """Step cap when no plateau comes first."""
    eval_every: int = 5
    min_points: int = 16
    """Curve points before the plateau rule may stop a run (the start model is point 0): 16 points are
    75 steps. With 8 (35 steps), SFT on one dev seed stopped at 28% in domain while the same rate on
    another seed rose from 18% to 100% between steps 35 and 50 (validation curves are noisy: one task of
    60 is 1.7 points)."""
    plateau_gain: float = 0.01
    """Plateau: the last quarter's best in-domain validation accuracy is < this above the best before it."""
    kl_samples: int = 2
    """Completions of the start policy per in-domain validation state for the curve's forward KL
    D_KL(pi_0 || pi) (curves.ForwardKL; 0 = off)."""
    sft_batch: int = 8
    """Trajectories per SFT step."""
    pivots_per_step: int = 8
    group_size: int = 8
    e2e_tasks_per_step: int = 4
    e2e_group_size: int = 8
    profile_k: int = 8
    lambda_diff: float = 0.6
    max_new_tokens: int = 16
    """Longest completion (a tool call is 10 tokens of the world's tokenizer, an expression <= 7)."""
    temperature: float = 1.0

    def key(self) -> str:
        """Names what a cell depends on: everything but the lists of seeds and methods and the rates (a
        cell's rate is in its own name), so a run on a subset fills the cells the whole grid reads."""
        d = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("seeds", "methods", "lrs")}
        if d["base_horizon"] is None:  # added later: presets without it keep their cell names
            del d["base_horizon"]
        d["world"] = miniworld.WORLD_VERSION
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]

    @property
    def selection_horizon(self) -> int | None:
        """The horizon of the tasks stage 2 selects the base on: `base_horizon`, else `horizon`."""
        return self.horizon if self.base_horizon is None else self.base_horizon

    def lr(self, method: str) -> float:
        return float(self.lrs[RATE_OF.get(method, method)])


PRESETS = {
    # A tooling check: every cell fills with finite numbers. Its few-step bases learn nothing.
    "ci": GridPreset(phase="dev", seeds=(0, 1), pretrain={"group_a": 60, "tool": 20, "group_b": 0, "report": 40},
                     exposure_tasks=10, exposure_steps=20, select_every=10, select_tasks=8, stage1_draws=1,
                     pretrain_steps=40, pretrain_batch=8, train_tasks=12, eval_in=16, eval_ood=8, val_in=8, val_ood=4,
                     max_steps=6, eval_every=3, warmup_steps=2, pivots_per_step=4, group_size=4,
                     e2e_tasks_per_step=2, e2e_group_size=4, profile_k=4),
    # Designing the world and choosing rates: dev tasks only.
    "dev": GridPreset(phase="dev", seeds=(0, 1, 2, 3)),
    # The protocol: held-out test tasks, seeds fixed before it runs, rates chosen on dev.
    "full": GridPreset(phase="test", seeds=tuple(range(10))),
    # `make demo`: the protocol on one test seed (its base is shared with full's seed 0 through the cache).
    "demo": GridPreset(phase="test", seeds=(0,)),
    # The horizon sweep's world (`--horizon H`): bases pre-trained on conversations of 2..16 operations.
    # The default bases met only 2-3 and never solved an 8-operation task (full-h8/): the sweep past H = 4
    # measured the pre-training's reach, not the methods. Checked on dev first, then run on 3 test seeds.
    # Stage 2 selects the base at 4 operations (25% of episodes) and every H reuses it: with the target at
    # H = 8 itself, stage 2 peaked at 8.5% by step 69 and came no closer in 300 more steps (log.jsonl).
    "long-dev": GridPreset(phase="dev", seeds=(0, 1, 2, 3), pretrain={**LONG_PRETRAIN}, base_horizon=4),
    "long": GridPreset(phase="test", seeds=(0, 1, 2), pretrain={**LONG_PRETRAIN}, base_horizon=4),
}


# ----------------------------------------------------------------------------- world and configs

def world(preset: GridPreset) -> dict[str, list[dict]]:
    """The task sets of a phase: in-domain training trajectories (canonical demonstrations), validation
    suites for the curves and the held-out evaluation suites, each from its own seed range."""
    p, h = preset.phase, preset.horizon
    return {"train": miniworld.tasks("B", "train", p, preset.train_tasks, horizon=h),
            "val_in": miniworld.tasks("B", "val", p, preset.val_in, horizon=h),
            "val_ood_a": miniworld.tasks("A", "val", p, preset.val_ood),
            "val_tool": miniworld.tasks("tool", "val", p, preset.val_ood),
            "eval_in": miniworld.tasks("B", "eval", p, preset.eval_in, horizon=h),
            "eval_ood_a": miniworld.tasks("A", "eval", p, preset.eval_ood),
            "eval_tool": miniworld.tasks("tool", "eval", p, preset.eval_ood)}


def run_config(preset: GridPreset, seed: int, trajectories: list[dict], out: Path) -> RunConfig:
    """A typed pipeline config for the miniature world (same validation as any preset)."""
    rl = {"pivots_per_step": preset.pivots_per_step, "group_size": preset.group_size,
          "max_new_tokens": preset.max_new_tokens, "temperature": preset.temperature}
    max_turns = 2 * (preset.horizon or 3) + 2  # room for the operations, the report and a few mistakes

    def section(method: str, algorithm_config: dict) -> dict:
        return {"steps": preset.max_steps, "tensorboard": False, "learning_rate": preset.lr(method),
                "warmup_steps": preset.warmup_steps, "algorithm_config": algorithm_config}

    return RunConfig.from_dict({
        "name": "paper_table", "model": "tiny", "seed": seed, "output_dir": str(out), "progress": False,
        "env": {"id": "pivot_algo.miniworld:MiniWorldEnv", "kwargs": {"max_turns": max_turns}, "trajectories": trajectories},
        "profile": {"k": preset.profile_k, "lambda_diff": preset.lambda_diff, "max_new_tokens": preset.max_new_tokens,
                    "temperature": preset.temperature},
        "trainers": {
            "sft": section("sft", {"unit": "trajectory", "trajectories_per_step": preset.sft_batch}),
            "pivotrl": section("pivotrl", rl),
            "pivotrl_exact_match": section("pivotrl_exact_match", rl),
            "pivotrl_null_reward": section("pivotrl_null_reward", rl),
            "pivotrl_random_turns": section("pivotrl_random_turns", rl),
            "e2e_grpo": section("e2e_grpo", {"tasks_per_step": preset.e2e_tasks_per_step,
                                             "group_size": preset.e2e_group_size,
                                             "max_new_tokens": preset.max_new_tokens,
                                             "temperature": preset.temperature})},
        "eval": {"max_new_tokens": preset.max_new_tokens, "temperature": 0.0}})
