"""The paper's Table 1 in miniature: a thin entry point. The grid lives in the package
(pivot_algo/experiments/table.py, run as `pivotrl table`); this file keeps the benchmark runnable from
the benchmarks folder:

    python benchmarks/paper_table.py --preset ci
"""

from __future__ import annotations

from pivot_algo.experiments.table import main

if __name__ == "__main__":
    raise SystemExit(main())
