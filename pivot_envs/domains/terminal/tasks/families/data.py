"""Data families: CSV aggregation and joins, JSON with jq, format conversion, checksums, sqlite."""

from __future__ import annotations

import collections
import hashlib
import json
import random
from typing import Any

from pivot_envs.domains.terminal.tasks.families._base import (
    CITIES,
    FIRST_NAMES,
    PRODUCTS,
    REGIONS,
    Draft,
    family,
    names,
    pick,
)
from pivot_envs.domains.terminal.tasks.spec import SetupScript, fill, python_check


def _sales(rng: random.Random) -> list[tuple[str, str, int, float]]:
    regions = pick(rng, REGIONS, rng.randint(3, 5))
    products = pick(rng, PRODUCTS, rng.randint(3, 5))
    return [(rng.choice(regions), rng.choice(products), rng.randint(1, 20), rng.randint(100, 9999) / 100)
            for _ in range(rng.randint(15, 30))]


@family("csv_aggregate", "CSV wrangling")
def csv_aggregate(rng: random.Random) -> Draft:
    rows = _sales(rng)
    key = rng.choice(("region", "product"))
    metric = rng.choice(("quantity", "revenue"))
    fname = rng.choice(("sales.csv", "orders.csv", "q3_sales.csv"))
    s = SetupScript().file(f"data/{fname}", "region,product,quantity,unit_price\n"
                           + "".join(f"{r},{p},{q},{u:.2f}\n" for r, p, q, u in rows))
    totals: dict[str, float] = collections.defaultdict(float)
    for r, p, qty, u in rows:
        totals[r if key == "region" else p] += qty if metric == "quantity" else qty * u
    fmt = (lambda v: str(int(v))) if metric == "quantity" else (lambda v: f"{v:.2f}")
    want = [f"{key},total_{metric}"] + [f"{k},{fmt(v)}" for k, v in sorted(totals.items())]
    out = f"{key}_{metric}.csv"
    test = python_check("""
got = open(OUT).read().strip().splitlines()
assert got == WANT, f"{OUT} should be {WANT}, got {got}"
""", OUT=out, WANT=want)
    what = "the total quantity" if metric == "quantity" else "the total revenue (quantity x unit_price, 2 decimals)"
    d = Draft(f"From /app/data/{fname}, compute {what} per {key}. Write /app/{out} with the header "
              f"\"{key},total_{metric}\" and one row per {key}, sorted alphabetically by {key}.",
              s.script(), test, [], f"Wrote {len(totals)} totals per {key} to {out}.")
    d.step("Look at the data.", rng.choice((f"head -n 5 data/{fname}", f"head -5 data/{fname}")))
    d.step("How many rows?", rng.choice((f"tail -n +2 data/{fname} | wc -l", f"wc -l < data/{fname}")))
    col = 1 if key == "region" else 2
    expr = "$3" if metric == "quantity" else "$3 * $4"
    pf = "%d" if metric == "quantity" else "%.2f"
    if rng.random() < 0.5:
        d.step("Aggregate with awk.",
               fill("""{ echo '@key@,total_@metric@'; awk -F, 'NR > 1 { t[$@col@] += @expr@ } END { for (k in t) printf "%s,@pf@\\n", k, t[k] }' data/@f@ | sort; } > @out@""",
                    key=key, metric=metric, col=col, expr=expr, pf=pf, f=fname, out=out))
    else:
        d.step("Aggregate with a short Python script.", fill("""python3 - <<'EOF'
import csv, collections
totals = collections.defaultdict(float)
with open("data/@f@") as fh:
    for row in csv.DictReader(fh):
        totals[row["@key@"]] += @pyexpr@
with open("@out@", "w") as out:
    out.write("@key@,total_@metric@\\n")
    for k in sorted(totals):
        out.write(f"{k},{totals[k]:@pyfmt@}\\n")
EOF""", f=fname, key=key, metric=metric, out=out,
            pyexpr='int(row["quantity"])' if metric == "quantity" else 'int(row["quantity"]) * float(row["unit_price"])',
            pyfmt=".0f" if metric == "quantity" else ".2f"))
    d.step("Check the result.", f"cat {out}")
    return d


@family("csv_join", "CSV wrangling")
def csv_join(rng: random.Random) -> Draft:
    depts = {i + 1: n for i, n in enumerate(pick(rng, ("sales", "ops", "research", "legal", "finance", "support"), 4))}
    people = pick(rng, FIRST_NAMES, rng.randint(8, 14))
    emps = [(100 + i, p, rng.choice(list(depts)), rng.randrange(40_000, 120_000, 500)) for i, p in enumerate(people)]
    threshold = rng.randrange(50_000, 90_000, 5_000)
    s = SetupScript()
    s.file("hr/employees.csv", "id,name,dept_id,salary\n" + "".join(f"{a},{b},{c},{d_}\n" for a, b, c, d_ in emps))
    s.file("hr/departments.csv", "dept_id,dept_name\n" + "".join(f"{k},{v}\n" for k, v in depts.items()))
    sel = sorted((e for e in emps if e[3] > threshold), key=lambda e: e[1])
    if not sel:
        threshold = min(e[3] for e in emps) - 500
        sel = sorted(emps, key=lambda e: e[1])
    want = ["name,dept_name,salary"] + [f"{n},{depts[dp]},{sal}" for _, n, dp, sal in sel]
    out = rng.choice(("high_earners.csv", "report.csv", "joined.csv"))
    test = python_check("""
got = open(OUT).read().strip().splitlines()
assert got == WANT, f"{OUT} should be {WANT}, got {got}"
""", OUT=out, WANT=want)
    d = Draft(f"Join /app/hr/employees.csv with /app/hr/departments.csv on dept_id. Write /app/{out} with "
              f"the header \"name,dept_name,salary\" and one row for each employee earning more than "
              f"{threshold}, sorted by name.", s.script(), test, [],
              f"Wrote {len(sel)} employees earning more than {threshold} to {out}.")
    d.step("Look at both files.", "head -n 4 hr/employees.csv hr/departments.csv")
    if rng.random() < 0.5:
        d.step("Join with awk: load departments first, then filter employees.",
               fill("""{ echo name,dept_name,salary; awk -F, 'NR == FNR { if (FNR > 1) d[$1] = $2; next } FNR > 1 && $4 > @t@ { print $2 "," d[$3] "," $4 }' hr/departments.csv hr/employees.csv | sort; } > @out@""",
                    t=threshold, out=out))
    else:
        d.step("Join with Python's csv module.", fill("""python3 - <<'EOF'
import csv
depts = {r["dept_id"]: r["dept_name"] for r in csv.DictReader(open("hr/departments.csv"))}
rows = [r for r in csv.DictReader(open("hr/employees.csv")) if int(r["salary"]) > @t@]
with open("@out@", "w") as out:
    out.write("name,dept_name,salary\\n")
    for r in sorted(rows, key=lambda r: r["name"]):
        out.write(f"{r['name']},{depts[r['dept_id']]},{r['salary']}\\n")
EOF""", t=threshold, out=out))
    d.step("Check the output.", f"cat {out}")
    d.step("Count the rows.", f"tail -n +2 {out} | wc -l")
    return d


@family("json_transform", "JSON wrangling")
def json_transform(rng: random.Random) -> Draft:
    people = pick(rng, FIRST_NAMES, rng.randint(6, 10))
    users: list[dict[str, Any]] = [{"id": i + 1, "name": p, "age": rng.randint(16, 70), "active": rng.random() < 0.6,
              "city": rng.choice(CITIES)} for i, p in enumerate(people)]
    if not any(u["active"] for u in users):
        users[0]["active"] = True
    fname = rng.choice(("users.json", "accounts.json", "members.json"))
    s = SetupScript().file(f"data/{fname}", json.dumps(users, indent=2) + "\n")
    variant = rng.choice(("names", "map", "group"))
    want: list[str] | dict[str, int] | dict[str, list[str]]
    if variant == "names":
        out = "active_names.txt"
        want = sorted(u["name"] for u in users if u["active"])
        test = python_check("""
got = open(OUT).read().split("\\n")
assert got[-1] == "" and got[:-1] == WANT, f"{OUT} should list {WANT}, one per line, got {got}"
""", OUT=out, WANT=want)
        instr = f"Write the names of all active users in /app/data/{fname} to /app/{out}, one per line, sorted alphabetically (plain text, no quotes)."
        cmd = rng.choice((f"jq -r '.[] | select(.active) | .name' data/{fname} | sort > {out}",
                          f"jq -r 'map(select(.active == true) | .name) | sort | .[]' data/{fname} > {out}"))
    elif variant == "map":
        age = rng.choice((18, 21, 30, 40))
        out = "ages.json"
        want = {u["name"]: u["age"] for u in users if u["age"] >= age}
        test = python_check("""
got = json.load(open(OUT))
assert got == WANT, f"{OUT} should be {WANT}, got {got}"
""", OUT=out, WANT=want)
        instr = (f"From /app/data/{fname}, build a JSON object that maps each user's name to their age, for "
                 f"users aged {age} or older only, and save it as /app/{out}.")
        cmd = rng.choice((f"jq 'map(select(.age >= {age})) | map({{(.name): .age}}) | add // {{}}' data/{fname} > {out}",
                          f"jq '[.[] | select(.age >= {age}) | {{key: .name, value: .age}}] | from_entries' data/{fname} > {out}"))
    else:
        out = "by_city.json"
        grouped: dict[str, list[str]] = collections.defaultdict(list)
        for u in users:
            grouped[u["city"]].append(u["name"])
        want = {c: sorted(v) for c, v in grouped.items()}
        test = python_check("""
got = json.load(open(OUT))
assert got == WANT, f"{OUT} should be {WANT}, got {got}"
""", OUT=out, WANT=want)
        instr = (f"Group the users in /app/data/{fname} by city: write /app/{out} as a JSON object whose keys "
                 f"are the cities and whose values are the sorted lists of user names living there.")
        cmd = f"jq 'group_by(.city) | map({{(.[0].city): (map(.name) | sort)}}) | add' data/{fname} > {out}"
    d = Draft(instr, s.script(), test, [], f"Wrote {out}.")
    d.step("Look at the structure.", rng.choice((f"jq '.[0]' data/{fname}", f"head -n 9 data/{fname}")))
    d.step("How many records?", f"jq length data/{fname}")
    d.step("Transform with jq.", cmd)
    d.step("Check the output.", f"cat {out}")
    return d


@family("csv_to_json", "data conversion")
def csv_to_json(rng: random.Random) -> Draft:
    items = pick(rng, PRODUCTS, rng.randint(4, 8))
    rows = [{"sku": f"{p[:3].upper()}-{rng.randint(100, 999)}", "name": p, "price": rng.randint(100, 9999) / 100,
             "stock": rng.randint(0, 500)} for p in items]
    fname = rng.choice(("inventory.csv", "catalog.csv", "products.csv"))
    s = SetupScript().file(f"in/{fname}", "sku,name,price,stock\n"
                           + "".join(f"{r['sku']},{r['name']},{r['price']:.2f},{r['stock']}\n" for r in rows))
    out = fname.replace(".csv", ".json")
    test = python_check("""
got = json.load(open(OUT))
assert got == WANT, f"{OUT} should be {WANT}, got {got}"
assert all(isinstance(r["price"], float) and isinstance(r["stock"], int) for r in got), "price must be a number, stock an integer"
""", OUT=f"out/{out}", WANT=rows)
    d = Draft(f"Convert /app/in/{fname} to JSON: write /app/out/{out} as a JSON array with one object per "
              f"row (keys sku, name, price, stock, in the file's row order), where price is a number and "
              f"stock an integer (not strings).", s.script(), test, [], f"Converted {len(rows)} rows to out/{out}.")
    d.step("Look at the CSV.", f"cat in/{fname}")
    d.step("Convert with Python.", fill("""mkdir -p out && python3 - <<'EOF'
import csv, json
with open("in/@f@") as fh:
    rows = [dict(r, price=float(r["price"]), stock=int(r["stock"])) for r in csv.DictReader(fh)]
with open("out/@o@", "w") as fh:
    json.dump(rows, fh, indent=@indent@)
print(len(rows), "rows")
EOF""", f=fname, o=out, indent=rng.choice((2, 4))))
    d.step("Validate the JSON.", rng.choice((f"jq '.[0]' out/{out}", f"python3 -m json.tool out/{out} | head -n 8")))
    return d


@family("checksums", "checksums")
def checksums(rng: random.Random) -> Draft:
    variant = rng.choice(("make_manifest", "find_corrupt"))
    folder = rng.choice(("release", "downloads", "artifacts"))
    files = {f"{n}.{rng.choice(('tar', 'bin', 'img', 'txt'))}": f"{rng.getrandbits(128):032x}\n" * rng.randint(1, 4)
             for n in names(rng, rng.randint(4, 7))}
    s = SetupScript()
    for n, t in files.items():
        s.file(f"{folder}/{n}", t)
    digest = {n: hashlib.sha256(t.encode()).hexdigest() for n, t in files.items()}
    if variant == "make_manifest":
        want = [f"{digest[n]}  {n}" for n in sorted(files)]
        test = python_check("""
got = open(os.path.join(FOLDER, "SHA256SUMS")).read().strip().splitlines()
assert got == WANT, f"SHA256SUMS should be {WANT}, got {got}"
""", FOLDER=folder, WANT=want)
        d = Draft(f"Create /app/{folder}/SHA256SUMS listing the SHA-256 checksum of every file in /app/{folder} "
                  f"in the standard sha256sum format (\"<hash>  <name>\", names relative to the folder), "
                  f"sorted by file name.", s.script(), test, [], f"Wrote SHA256SUMS for {len(files)} files and verified it.")
        d.step("List the files.", f"ls {folder}")
        d.step("Compute the checksums.", rng.choice((f"cd {folder} && sha256sum * > SHA256SUMS.tmp && mv SHA256SUMS.tmp SHA256SUMS",
                                                     f"cd {folder} && sha256sum $(ls) > /tmp/sums && mv /tmp/sums SHA256SUMS")))
        d.step("Verify the manifest.", f"cd {folder} && sha256sum -c SHA256SUMS")
        return d
    bad = rng.choice(sorted(files))
    manifest = "".join(f"{digest[n] if n != bad else hashlib.sha256(b'original ' + n.encode()).hexdigest()}  {n}\n"
                       for n in sorted(files))
    s.file(f"{folder}/checksums.txt", manifest)
    test = python_check("""
got = open("corrupted.txt").read().strip()
assert got == BAD, f"corrupted.txt should name {BAD!r}, got {got!r}"
assert not os.path.exists(os.path.join(FOLDER, BAD)), f"{BAD} should have been deleted"
assert len(os.listdir(FOLDER)) == N, "only the corrupted file should be deleted"
""", BAD=bad, FOLDER=folder, N=len(files))
    d = Draft(f"One file in /app/{folder} does not match its checksum in /app/{folder}/checksums.txt. "
              f"Find it, write its name (just the file name) to /app/corrupted.txt, and delete the corrupted file.",
              s.script(), test, [], f"{bad} failed the check; its name is in corrupted.txt and the file is deleted.")
    d.step("Look at the manifest.", f"cat {folder}/checksums.txt")
    d.step("Check every file.", f"cd {folder} && sha256sum -c checksums.txt")
    d.step("Save the failing name.", rng.choice((f"cd {folder} && sha256sum -c checksums.txt 2>/dev/null | grep FAILED | cut -d: -f1 > ../corrupted.txt; cat ../corrupted.txt",
                                                 f"cd {folder} && sha256sum -c checksums.txt 2>/dev/null | awk -F: '/FAILED/ {{print $1}}' > ../corrupted.txt; cat ../corrupted.txt")))
    d.step("Delete it.", f"rm -v {folder}/\"$(cat corrupted.txt)\"")
    d.step("Everything left should pass.", f"cd {folder} && sha256sum -c checksums.txt --ignore-missing")
    return d


@family("sqlite_query", "sqlite")
def sqlite_query(rng: random.Random) -> Draft:
    people = pick(rng, FIRST_NAMES, rng.randint(5, 8))
    orders = []
    for i in range(rng.randint(15, 30)):
        orders.append((i + 1, rng.randint(1, len(people)), rng.randint(500, 50_000) / 100,
                       rng.choice(("paid", "paid", "shipped", "cancelled"))))
    db = rng.choice(("shop.db", "store.db", "sales.db"))
    rows_c = ", ".join(f"({i + 1}, '{p}', '{rng.choice(CITIES)}')" for i, p in enumerate(people))
    rows_o = ", ".join(f"({a}, {b}, {c:.2f}, '{d_}')" for a, b, c, d_ in orders)
    s = SetupScript().run(f"""sqlite3 {db} <<'SQL'
CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id), amount REAL, status TEXT);
INSERT INTO customers VALUES {rows_c};
INSERT INTO orders VALUES {rows_o};
SQL""")
    variant = rng.choice(("top_customer", "status_counts"))
    if variant == "top_customer":
        totals: collections.defaultdict[int, float] = collections.defaultdict(float)
        for _, cid, amt, st in orders:
            if st != "cancelled":
                totals[cid] += amt
        ranked = sorted(totals.items(), key=lambda kv: (-round(kv[1], 2), people[kv[0] - 1]))
        cid, total = ranked[0]
        want = f"{people[cid - 1]},{total:.2f}"
        out = "top_customer.txt"
        test = python_check("""
got = open(OUT).read().strip()
assert got == WANT, f"{OUT} should be {WANT!r}, got {got!r}"
""", OUT=out, WANT=want)
        d = Draft(f"The SQLite database /app/{db} has tables customers and orders. Find the customer with the "
                  f"highest total order amount, ignoring cancelled orders, and write \"<name>,<total>\" (total "
                  f"with 2 decimals) to /app/{out}.", s.script(), test, [], f"The top customer is {want.split(',')[0]}; written to {out}.")
        d.step("Look at the schema.", f"sqlite3 {db} .schema")
        d.step("Peek at the orders.", f"sqlite3 {db} 'SELECT * FROM orders LIMIT 5;'")
        query = ("SELECT c.name || ',' || printf('%.2f', SUM(o.amount)) FROM orders o JOIN customers c ON c.id = o.customer_id "
                 "WHERE o.status != 'cancelled' GROUP BY c.id ORDER BY ROUND(SUM(o.amount), 2) DESC, c.name LIMIT 1;")
        d.step("Totals per customer, without cancelled orders.",
               f"sqlite3 {db} \"SELECT c.name, ROUND(SUM(o.amount), 2) AS total FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.status != 'cancelled' GROUP BY c.id ORDER BY total DESC;\"")
        d.step("Write the top one.", f"sqlite3 {db} \"{query}\" > {out}")
        d.step("Check.", f"cat {out}")
        return d
    counts = collections.Counter(st for *_, st in orders)
    want_rows = ["status,orders"] + [f"{st},{n}" for st, n in sorted(counts.items())]
    out = "order_status.csv"
    test = python_check("""
got = open(OUT).read().strip().splitlines()
assert got == WANT, f"{OUT} should be {WANT}, got {got}"
""", OUT=out, WANT=want_rows)
    d = Draft(f"Using the SQLite database /app/{db}, count the orders per status and write /app/{out} as CSV "
              f"with the header \"status,orders\" and one row per status, sorted by status.", s.script(), test, [],
              f"Wrote the order counts per status to {out}.")
    d.step("List the tables.", f"sqlite3 {db} .tables")
    d.step("Look at the orders table.", f"sqlite3 -header {db} 'SELECT * FROM orders LIMIT 3;'")
    d.step("Count per status as CSV.", rng.choice((
        f"sqlite3 -header -csv {db} 'SELECT status, COUNT(*) AS orders FROM orders GROUP BY status ORDER BY status;' > {out}",
        f"sqlite3 -csv {db} 'SELECT status, COUNT(*) FROM orders GROUP BY status ORDER BY status;' | sed '1i status,orders' > {out}")))
    d.step("Check.", f"cat {out}")
    return d
