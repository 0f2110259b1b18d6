from pathlib import Path


def test_env_file():
    assert Path("/app/.env").read_text().splitlines() == ["DEBUG=False", "HOST=0.0.0.0", "PORT=8080"]
