import collections
import csv
import json

rows = list(csv.reader(open("/app/data/sales.csv")))
invalid = [i + 1 for i, r in enumerate(rows) if i > 0 and not r[3].isdigit()]
valid = [r for i, r in enumerate(rows) if i > 0 and r[3].isdigit()]
total = sum(int(r[3]) * float(r[4]) for r in valid)
by_store = collections.defaultdict(float)
units = collections.Counter()
for r in valid:
    by_store[r[1]] += int(r[3]) * float(r[4])
    units[r[2]] += int(r[3])

report = json.load(open("/app/report.json"))
assert abs(report["total_revenue"] - round(total, 2)) < 1e-6, report["total_revenue"]
assert set(report["revenue_by_store"]) == set(by_store), report["revenue_by_store"]
for store, value in by_store.items():
    assert abs(report["revenue_by_store"][store] - round(value, 2)) < 1e-6, store
assert report["best_item"] == units.most_common(1)[0][0], report["best_item"]
got = [int(x) for x in open("/app/invalid_rows.txt").read().split()]
assert got == invalid, (got, invalid)
print("ok")
