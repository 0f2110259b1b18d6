"""PivotSWE-v0: bug fixing in real Python repositories (see env.py and README.md)."""
