import dataclasses, json, sys, time
import torch
torch.set_num_threads(1)
from pivot_algo.experiments import bases, presets
seed = int(sys.argv[1])
p = dataclasses.replace(presets.PRESETS["dev"], select_every=1)
t0 = time.time()
path = bases.pretrain_base(p, seed)
d = json.load(open(path / "pretrain.json"))
print(json.dumps({"seed": seed, "select_every": 1, "base_step": d["base_step"], "success": d["base_selection_success"],
                  "group_a": d["base_selection_group_a"], "tool": d["base_selection_tool"],
                  "trace": [(r["step"], r["success"], r["group_a"]) for r in d["selection"]][-25:],
                  "seconds": round(time.time() - t0)}), flush=True)
