#!/usr/bin/env bash
set -e

write_tool() {
  cat > /app/wordstat.py <<'PY'
#!/usr/bin/env python3
import argparse
import collections
import sys


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("file")
    parser.add_argument("--top", type=int)
    args = parser.parse_args()
    text = open(args.file, encoding="utf-8").read()
    words = text.split()
    if args.top:
        counts = collections.Counter(w.lower() for w in words)
        for word, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: args.top]:
            print(word, n)
    else:
        print(f"lines={text.count(chr(10))} words={len(words)} chars={len(text)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
PY
  chmod +x /app/wordstat.py
}

write_tool
python /app/wordstat.py /app/sample.txt
python /app/wordstat.py --top 2 /app/sample.txt | tee /app/top2.txt
