"""Stage-2 probe (README beside this file): one seed's base of the dev preset with stage 2 checked after
every step (`select_every=1`); prints the chosen step and the last 25 checks (step, in-domain success,
group A). Usage: PIVOTRL_CACHE=<cache holding the stage-1 models> python stage2_probe.py SEED"""

from __future__ import annotations

import dataclasses
import json
import sys
import time

from pivot_algo.experiments import bases, presets


def main() -> None:
    import torch

    torch.set_num_threads(1)
    seed = int(sys.argv[1])
    p = dataclasses.replace(presets.PRESETS["dev"], select_every=1)
    t0 = time.time()
    d = json.loads((bases.pretrain_base(p, seed) / "pretrain.json").read_text())
    print(json.dumps({"seed": seed, "select_every": 1, "base_step": d["base_step"],
                      "success": d["base_selection_success"], "group_a": d["base_selection_group_a"],
                      "tool": d["base_selection_tool"],
                      "trace": [(r["step"], r["success"], r["group_a"]) for r in d["selection"]][-25:],
                      "seconds": round(time.time() - t0)}), flush=True)


if __name__ == "__main__":
    main()
