from pathlib import Path

groups = {p.stem: p.read_text().splitlines() for p in Path("/app/by_group").glob("*.txt")}
assert groups == {"dev": ["alice", "bob"], "ops": ["alice", "carol"], "audit": ["carol"]}, groups
assert Path("/app/uids.txt").read_text().splitlines() == ["bob 1001", "carol 1002", "alice 1003"]
print("ok")
