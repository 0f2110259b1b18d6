import subprocess
import sys


def run(*args):
    return subprocess.run([sys.executable, "/app/cli.py", *args], capture_output=True, text=True, check=True).stdout


def test_greet():
    assert run("greet", "ada") == "hello ada\n"


def test_shout():
    assert run("greet", "bo", "--shout") == "HELLO BO\n"
