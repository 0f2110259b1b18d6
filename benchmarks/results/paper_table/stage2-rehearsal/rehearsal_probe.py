"""Stage-2 rehearsal probe (README beside this file): one seed's dev base with stage-2 fields overridden;
prints the chosen step and every check (step, in-domain success, group A, tool use).
Usage: PIVOTRL_CACHE=<cache holding the stage-1 models> python rehearsal_probe.py SEED rehearse_a_share=0.5 ..."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from typing import Any

from pivot_algo.experiments import bases, presets

INT_FIELDS = ("select_every", "select_every_rising", "exposure_steps")


def main() -> None:
    import torch

    torch.set_num_threads(1)
    seed = int(sys.argv[1])
    over: dict[str, Any] = {}
    for arg in sys.argv[2:]:
        k, v = arg.split("=")
        over[k] = int(v) if k in INT_FIELDS else float(v)
    p = dataclasses.replace(presets.PRESETS["dev"], **over)
    t0 = time.time()
    d = json.loads((bases.pretrain_base(p, seed) / "pretrain.json").read_text())
    print(json.dumps({"seed": seed, "over": over, "base_step": d["base_step"],
                      "success": d["base_selection_success"], "group_a": d["base_selection_group_a"],
                      "tool": d["base_selection_tool"],
                      "trace": [(r["step"], r["success"], r["group_a"], r["tool"]) for r in d["selection"]],
                      "seconds": round(time.time() - t0)}), flush=True)


if __name__ == "__main__":
    main()
