#!/bin/bash
python3 - <<'EOF'
import os, tarfile
expected = sorted([f"{s}/{s}.log.{n}" for s in ("nginx", "app", "cron") for n in (1, 2, 3)] + ["syslog.log.1"])
with tarfile.open("/app/backup/rotated-logs.tar.gz") as t:
    names = sorted(m.name.removeprefix("./") for m in t.getmembers() if m.isfile())
assert names == expected, names
for n in expected:
    assert not os.path.exists(f"/app/var/log/{n}"), f"{n} still exists"
for s in ("nginx", "app", "cron", "syslog"):
    p = f"/app/var/log/{s}/{s}.log" if s != "syslog" else "/app/var/log/syslog.log"
    assert os.path.exists(p), f"{p} was deleted"
assert os.path.exists("/app/var/log/app/app.log.bak"), "app.log.bak is not a rotated log"
assert open("/app/backup/count.txt").read().strip() == str(len(expected))
print("ok")
EOF
