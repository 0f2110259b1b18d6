#!/bin/bash
head -n 5 /app/data/sales.csv
awk -F, 'NR > 1 && $4 !~ /^[0-9]+$/ {print NR}' /app/data/sales.csv > /app/invalid_rows.txt
cat /app/invalid_rows.txt
python3 - <<'EOF'
import csv, collections, json
total, by_store, units = 0.0, collections.defaultdict(float), collections.Counter()
with open("/app/data/sales.csv") as fh:
    for row in csv.DictReader(fh):
        if not row["units"].isdigit():
            continue
        revenue = int(row["units"]) * float(row["unit_price"])
        total += revenue
        by_store[row["store"]] += revenue
        units[row["item"]] += int(row["units"])
report = {"total_revenue": round(total, 2),
          "revenue_by_store": {k: round(v, 2) for k, v in sorted(by_store.items())},
          "best_item": units.most_common(1)[0][0]}
json.dump(report, open("/app/report.json", "w"), indent=2)
EOF
cat /app/report.json
