"""What the experiments (the paper table, the SmolLM2 row, the benchmarks) share.

- `pivot_algo.experiments.stats`: intervals and tests (Wilson, exact McNemar, bootstrap of a mean,
  two-level bootstrap over [seeds, tasks], clustered bootstrap, Student-t over seeds, paired
  differences over seeds), numpy only.
- `pivot_algo.experiments.stages`: `StageCache`, one resumable stage cache: a stage's value is stored
  under its name together with the spec that produced it, written atomically, reused only for the
  same spec.
"""
