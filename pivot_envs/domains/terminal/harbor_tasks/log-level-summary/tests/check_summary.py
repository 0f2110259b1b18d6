import collections

lines = open("/app/logs/app.log").read().splitlines()
counts = collections.Counter(line.split()[1] for line in lines)
got = [l.split() for l in open("/app/summary.txt").read().strip().splitlines()]
assert sorted(got, key=lambda p: p[0]) == sorted([[k, str(v)] for k, v in counts.items()]), got
assert [int(c) for _, c in got] == sorted((int(c) for _, c in got), reverse=True), "not sorted by count"
errors = [l for l in lines if l.split()[1] == "ERROR"]
assert open("/app/errors.log").read().splitlines() == errors, "errors.log differs"
print("ok")
