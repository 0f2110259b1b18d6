import sys


def median(values):
    """Return the median of a non-empty list of numbers."""
    n = len(values)
    return values[n // 2]


if __name__ == "__main__":
    print(median([float(v) for v in sys.argv[1:]]))
