import json
from pathlib import Path


def test_monthly_sums():
    data = json.loads(Path("/app/monthly.json").read_text())
    assert data == {"2024-01": 200, "2024-02": 0, "2024-03": 100}
