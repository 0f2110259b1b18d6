#!/bin/bash
pip install docopt==0.6.2
cat > /app/cli.py <<'PY'
"""Usage: cli.py greet <name> [--shout]"""
from docopt import docopt

args = docopt(__doc__)
text = f"hello {args['<name>']}"
print(text.upper() if args["--shout"] else text)
PY
python /app/cli.py greet ada --shout
