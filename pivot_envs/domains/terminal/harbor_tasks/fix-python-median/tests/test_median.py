import subprocess
import sys

sys.path.insert(0, "/app")
from stats import median  # noqa: E402

assert median([3, 1, 2, 10]) == 2.5
assert median([5, 1, 3]) == 3
assert median([7]) == 7
assert median([2, 2, 1, 1]) == 1.5
data = [9, 4, 1]
median(data)
assert data == [9, 4, 1], "median must not modify its input"
out = subprocess.run([sys.executable, "/app/stats.py", "3", "1", "2", "10"], capture_output=True, text=True).stdout.strip()
assert out == "2.5", out
print("ok")
