"""Text families: grep/sort/uniq counting, sed replacement, log analysis, config edits."""

from __future__ import annotations

import collections
import random

from pivot_envs.domains.terminal.tasks.families._base import (
    CITIES,
    FIRST_NAMES,
    WORDS,
    Draft,
    family,
    names,
    pick,
)
from pivot_envs.domains.terminal.tasks.spec import SetupScript, fill, python_check

LEVELS = ("INFO", "DEBUG", "WARN", "ERROR")


@family("text_count", "text processing")
def text_count(rng: random.Random) -> Draft:
    variant = rng.choice(("count_lines", "top_words", "emails"))
    s = SetupScript()
    if variant == "count_lines":
        fname = f"{rng.choice(('server', 'app', 'worker', 'batch'))}.log"
        word = rng.choice(("timeout", "refused", "denied", "overflow", "retry"))
        lines = []
        for i in range(rng.randint(30, 60)):
            lvl = rng.choice(LEVELS)
            msg = " ".join(rng.choices(WORDS, k=3))
            if rng.random() < 0.3:
                msg += f" {rng.choice((word, word.upper(), word.capitalize()))}"
            lines.append(f"{i:04d} {lvl} {msg}\n")
        text = "".join(lines)
        n = sum(word in line.lower() for line in lines)
        out = rng.choice(("count.txt", "matches.txt", "result.txt"))
        s.file(fname, text)
        test = python_check("""
got = open(OUT).read().strip()
assert got == str(N), f"{OUT} should contain {N}, got {got!r}"
""", OUT=out, N=n)
        d = Draft(f"Count how many lines of /app/{fname} mention the word \"{word}\" in any letter case "
                  f"(e.g. {word.upper()} also counts) and write just that number to /app/{out}.",
                  s.script(), test, [], f"{n} lines mention \"{word}\"; the number is in {out}.")
        d.step("Look at the start of the log.", rng.choice((f"head -n 5 {fname}", f"head {fname}")))
        d.step("How many lines in total?", rng.choice((f"wc -l < {fname}", f"cat {fname} | wc -l")))
        d.step("Show the matching lines, ignoring case.", f"grep -in {word} {fname}")
        d.step("Write the count.", rng.choice((f"grep -ic {word} {fname} > {out}",
                                               f"grep -i {word} {fname} | wc -l > {out}")))
        d.step("Check the file.", f"cat {out}")
        return d
    if variant == "top_words":
        fname = f"{rng.choice(('essay', 'notes', 'story', 'transcript'))}.txt"
        vocab = pick(rng, WORDS, 10)
        weights = list(range(len(vocab) * 3, 0, -3))  # distinct counts make the ranking unambiguous
        counts = dict(zip(vocab, weights))
        bag = [w for w, c in counts.items() for _ in range(c)]
        rng.shuffle(bag)
        text = "".join(" ".join(bag[i:i + 8]) + "\n" for i in range(0, len(bag), 8))
        k = rng.randint(3, 5)
        top = [f"{w} {counts[w]}" for w in vocab[:k]]
        out = rng.choice(("top_words.txt", "frequent.txt"))
        s.file(fname, text)
        test = python_check("""
got = [" ".join(l.split()) for l in open(OUT).read().strip().splitlines()]
assert got == TOP, f"{OUT} should be {TOP}, got {got}"
""", OUT=out, TOP=top)
        d = Draft(f"Find the {k} most frequent words in /app/{fname} and write them to /app/{out}, one "
                  f"per line as \"<word> <count>\", most frequent first.", s.script(), test, [],
                  f"Wrote the top {k} words with their counts to {out}.")
        d.step("Peek at the text.", f"head -n 3 {fname}")
        d.step("Count every word.", rng.choice((f"tr -s ' ' '\\n' < {fname} | sort | uniq -c | sort -rn",
                                                f"cat {fname} | tr ' ' '\\n' | grep -v '^$' | sort | uniq -c | sort -nr")))
        d.step(f"Keep the top {k} as 'word count'.",
               f"tr -s ' ' '\\n' < {fname} | sort | uniq -c | sort -rn | head -n {k} | awk '{{print $2, $1}}' > {out}")
        d.step("Check.", f"cat {out}")
        return d
    fname = f"{rng.choice(('contacts', 'mailing', 'signups'))}.txt"
    people = pick(rng, FIRST_NAMES, rng.randint(6, 10))
    domains = [f"{c}.example.org" for c in pick(rng, CITIES, 3)]
    emails = [f"{p}@{rng.choice(domains)}" for p in people]
    lines = []
    for _ in range(rng.randint(15, 25)):
        e = rng.choice(emails)
        lines.append(rng.choice((f"From: {e.split('@')[0].title()} <{e}>\n", f"contact {e} about {rng.choice(WORDS)}\n",
                                 f"{rng.choice(WORDS)} - reply to {e}; thanks\n", f"no address on this line {rng.choice(WORDS)}\n")))
    text = "".join(lines)
    import re
    uniq = sorted(set(re.findall(r"[a-z]+@[a-z.]+[a-z]", text)))
    out = rng.choice(("emails.txt", "addresses.txt"))
    s.file(fname, text)
    test = python_check("""
got = open(OUT).read().split()
assert got == WANT, f"{OUT} should list {WANT}, got {got}"
""", OUT=out, WANT=uniq)
    d = Draft(f"Extract every distinct e-mail address from /app/{fname} and write them to /app/{out}, "
              f"one per line, sorted alphabetically, without duplicates.", s.script(), test, [],
              f"Found {len(uniq)} distinct addresses; they are in {out}.")
    d.step("Look at the file.", f"head -n 8 {fname}")
    d.step("Extract the addresses.", rng.choice((f"grep -oE '[a-z]+@[a-z.]+[a-z]' {fname} | sort -u > {out}",
                                                 f"grep -Eo '[a-z]+@[a-z.]+[a-z]' {fname} | sort | uniq > {out}")))
    d.step("Check the result.", rng.choice((f"cat {out}", f"cat -n {out}")))
    return d


@family("text_replace", "text processing")
def text_replace(rng: random.Random) -> Draft:
    old, new = rng.sample(("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne"), 2)
    folder = rng.choice(("docs", "pages", "content"))
    s = SetupScript()
    md, txt = {}, {}
    for n in names(rng, rng.randint(3, 5)):
        body = "".join(f"{' '.join(rng.choices(WORDS, k=4))} {old if rng.random() < 0.6 else ''} {rng.choice(WORDS)}\n".replace("  ", " ")
                       for _ in range(rng.randint(3, 6)))
        md[f"{folder}/{n}.md"] = f"# About {old}\n" + body
    for n in names(rng, 2):
        txt[f"{folder}/{n}.txt"] = f"legacy notes: {old} {rng.choice(WORDS)}\n"
    for p, t in (md | txt).items():
        s.file(p, t)
    want = {p: t.replace(old, new) for p, t in md.items()} | txt
    test = python_check("""
for p, text in WANT.items():
    got = open(p).read()
    assert got == text, f"{p} does not have the expected content"
extra = sorted(set(os.listdir(FOLDER)) - {os.path.basename(p) for p in WANT})
assert not extra, f"unexpected files left in {FOLDER}: {extra} (no backup files)"
""", WANT=want, FOLDER=folder)
    d = Draft(f"The company was renamed from {old} to {new}. Replace every occurrence of \"{old}\" with "
              f"\"{new}\" in all Markdown (.md) files in /app/{folder}. Do not touch the .txt files, and "
              f"do not leave backup files behind.", s.script(), test, [],
              f"Replaced {old} with {new} in the {len(md)} Markdown files; .txt files untouched.")
    d.step("Which files mention the old name?", rng.choice((f"grep -c {old} {folder}/*", f"grep -l {old} {folder}/*")))
    d.step("Replace it in the Markdown files only.", rng.choice((f"sed -i 's/{old}/{new}/g' {folder}/*.md",
                                                                f"find {folder} -name '*.md' -exec sed -i 's/{old}/{new}/g' {{}} +")))
    d.step("Check no Markdown file still mentions it.", f"grep -c {old} {folder}/*.md || true")
    d.step("And the new name is in place.", f"grep -h {new} {folder}/*.md | head -n 3")
    return d


@family("log_analysis", "log analysis")
def log_analysis(rng: random.Random) -> Draft:
    variant = rng.choice(("top_ips", "errors_per_hour", "status_counts"))
    ips = [f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}" for _ in range(6)]
    ips = list(dict.fromkeys(ips))
    weights = {ip: w for ip, w in zip(ips, rng.sample(range(2, 14), len(ips)))}
    paths = ["/", "/login", "/api/items", "/api/users", "/static/app.js", f"/{rng.choice(WORDS)}"]
    day = f"{rng.randint(10, 28)}/Mar/2024"
    entries = []
    for ip, w in weights.items():
        for _ in range(w):
            hour = rng.randint(8, 14)
            status = rng.choices((200, 200, 200, 301, 404, 500, 503), k=1)[0]
            entries.append((hour, rng.randint(0, 59), rng.randint(0, 59), ip, rng.choice(paths), status))
    entries.sort()
    if not any(e[5] >= 500 for e in entries):  # every variant needs at least one server error
        entries[0] = entries[0][:5] + (500,)
    text = "".join(f'{ip} - - [{day}:{h:02d}:{m:02d}:{sec:02d} +0000] "GET {p} HTTP/1.1" {st} {rng.randint(200, 9000)}\n'
                   for h, m, sec, ip, p, st in entries)
    log = rng.choice(("access.log", "nginx_access.log", "web.log"))
    s = SetupScript().file(f"logs/{log}", text)
    if variant == "top_ips":
        k = 3
        top = sorted(weights.items(), key=lambda kv: -kv[1])[:k]
        want = [f"{c} {ip}" for ip, c in top]
        out = "top_ips.txt"
        instr = (f"From the web server log /app/logs/{log}, find the {k} client IP addresses with the most "
                 f"requests. Write them to /app/{out}, one per line as \"<count> <ip>\", busiest first.")
        steps = [("Count requests per IP.", f"awk '{{print $1}}' logs/{log} | sort | uniq -c | sort -rn"),
                 ("Save the top 3.", rng.choice((f"awk '{{print $1}}' logs/{log} | sort | uniq -c | sort -rn | head -n 3 | awk '{{print $1, $2}}' > {out}",
                                                 f"cut -d' ' -f1 logs/{log} | sort | uniq -c | sort -rn | head -3 | sed 's/^ *//' > {out}")))]
    elif variant == "errors_per_hour":
        per = collections.Counter(h for h, _, _, _, _, st in entries if st >= 500)
        want = [f"{h:02d} {c}" for h, c in sorted(per.items())]
        out = "errors_by_hour.txt"
        instr = (f"Using /app/logs/{log}, count the server errors (HTTP status 500-599) per hour of the day. "
                 f"Write /app/{out} with one line per hour that had errors, as \"<HH> <count>\" (two-digit "
                 f"hour), sorted by hour.")
        steps = [("Look at the status codes present.", f"awk '{{print $9}}' logs/{log} | sort | uniq -c"),
                 ("Count 5xx responses by hour.", rng.choice((
                     f"awk '$9 >= 500 {{split($4, t, \":\"); print t[2]}}' logs/{log} | sort | uniq -c | awk '{{print $2, $1}}' > {out}",
                     f"awk '$9 ~ /^5/ {{print substr($4, 14, 2)}}' logs/{log} | sort | uniq -c | awk '{{print $2, $1}}' > {out}")))]
    else:
        counts = collections.Counter(st for *_, st in entries)
        want = [f"{st} {c}" for st, c in sorted(counts.items())]
        out = "status_counts.txt"
        instr = (f"Summarise the HTTP status codes in /app/logs/{log}: write /app/{out} with one line per "
                 f"status code as \"<status> <count>\", sorted by status code.")
        steps = [("Which field is the status?", f"head -n 2 logs/{log} | awk '{{print $9}}'"),
                 ("Count each status.", rng.choice((f"awk '{{print $9}}' logs/{log} | sort | uniq -c | awk '{{print $2, $1}}' > {out}",
                                                    f"awk '{{n[$9]++}} END {{for (s in n) print s, n[s]}}' logs/{log} | sort -n > {out}")))]
    test = python_check("""
got = [" ".join(l.split()) for l in open(OUT).read().strip().splitlines()]
assert got == WANT, f"{OUT} should be {WANT}, got {got}"
""", OUT=out, WANT=want)
    d = Draft(instr, s.script(), test, [], f"Wrote the summary to {out}.")
    d.step("Look at the log format.", rng.choice((f"head -n 3 logs/{log}", f"head -3 logs/{log}")))
    d.step("How many requests?", rng.choice((f"wc -l < logs/{log}", f"wc -l logs/{log}")))
    for thought, cmd in steps:
        d.step(thought, cmd)
    d.step("Check the output.", f"cat {out}")
    return d


@family("config_edit", "config edits")
def config_edit(rng: random.Random) -> Draft:
    variant = rng.choice(("dotenv", "ini"))
    s = SetupScript()
    if variant == "dotenv":
        fname = rng.choice((".env", "app.env", "settings.env"))
        port, new_port = rng.sample(range(3000, 9000), 2)
        host = rng.choice(CITIES)
        lines = [f"APP_NAME={rng.choice(WORDS)}", f"PORT={port}", "DEBUG=true", f"DB_HOST={host}.db.internal",
                 f"# {rng.choice(WORDS)} settings", f"CACHE_TTL={rng.randint(10, 600)}"]
        text = "\n".join(lines) + "\n"
        level = rng.choice(("warn", "error", "info"))
        want = text.replace(f"PORT={port}", f"PORT={new_port}").replace("DEBUG=true", "DEBUG=false") + f"LOG_LEVEL={level}\n"
        s.file(fname, text)
        test = python_check("""
got = open(FNAME).read()
assert got == WANT, f"{FNAME} should read exactly:\\n{WANT}\\ngot:\\n{got}"
""", FNAME=fname, WANT=want)
        d = Draft(f"Edit /app/{fname}: set PORT to {new_port}, set DEBUG to false, and append a new line "
                  f"LOG_LEVEL={level} at the end. Keep every other line (comments included) unchanged and in order.",
                  s.script(), test, [], f"Updated PORT and DEBUG and added LOG_LEVEL={level} in {fname}.")
        d.step("Current settings.", f"cat {fname}")
        if rng.random() < 0.5:
            d.step("Change PORT and DEBUG.", f"sed -i -e 's/^PORT=.*/PORT={new_port}/' -e 's/^DEBUG=.*/DEBUG=false/' {fname}")
        else:
            d.step("Change PORT.", f"sed -i 's/^PORT=.*/PORT={new_port}/' {fname}")
            d.step("Change DEBUG.", f"sed -i 's/^DEBUG=true$/DEBUG=false/' {fname}")
        d.step("Append the log level.", rng.choice((f"echo 'LOG_LEVEL={level}' >> {fname}", f"printf 'LOG_LEVEL={level}\\n' >> {fname}")))
        d.step("Check.", f"cat {fname}")
        return d
    fname = rng.choice(("app.ini", "service.ini", "config.ini"))
    old_host, new_host = [f"{c}.db.internal" for c in pick(rng, CITIES, 2)]
    cache_host = f"{rng.choice(CITIES)}.cache.internal"
    pool = rng.randint(2, 8)
    new_pool = pool + rng.randint(4, 12)
    text = (f"[server]\nhost = 0.0.0.0\nport = {rng.randint(8000, 8999)}\n\n"
            f"[database]\nhost = {old_host}\npool_size = {pool}\nname = {rng.choice(WORDS)}\n\n"
            f"[cache]\nhost = {cache_host}\nttl = {rng.randint(30, 300)}\n")
    want = text.replace(f"host = {old_host}", f"host = {new_host}").replace(f"pool_size = {pool}", f"pool_size = {new_pool}")
    s.file(fname, text)
    test = python_check("""
got = open(FNAME).read()
assert got == WANT, f"{FNAME} should read exactly:\\n{WANT}\\ngot:\\n{got}"
""", FNAME=fname, WANT=want)
    d = Draft(f"In /app/{fname}, change the [database] section so that host = {new_host} and "
              f"pool_size = {new_pool}. The other sections also have a host key; leave them and all other "
              f"lines exactly as they are.", s.script(), test, [],
              f"Set [database] host to {new_host} and pool_size to {new_pool}.")
    d.step("Look at the file.", f"cat {fname}")
    d.step("Where are the host keys?", f"grep -n '^host' {fname}")
    d.step("Edit only inside the [database] section.",
           fill("sed -i '/^\\[database\\]/,/^\\[/ { s/^host = .*/host = @h@/; s/^pool_size = .*/pool_size = @p@/ }' @f@",
                h=new_host, p=new_pool, f=fname))
    d.step("Verify the result.", rng.choice((f"cat {fname}", f"sed -n '/^\\[database\\]/,/^$/p' {fname}")))
    return d
