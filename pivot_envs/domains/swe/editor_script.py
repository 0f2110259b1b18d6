"""The `str_replace_editor` tool, run INSIDE the sandbox (`python3 editor_script.py <json args>`).

This file is copied into every SWE sandbox (see editor.py) and runs with the container's python3,
so it imports only the standard library. It follows the semantics SWE-agent and OpenHands users
know:

- `view`: a file with `cat -n` line numbers (optionally `view_range: [start, end]`, end -1 = to the
  end), or a directory listed two levels deep without hidden entries;
- `create`: write `file_text` to a NEW file (refuses an existing path);
- `str_replace`: replace `old_str`, which must occur exactly once, with `new_str` (default "");
- `insert`: insert `new_str` after line `insert_line` (0 = at the top);
- `undo_edit`: restore the file as it was before its last edit (history kept in the sandbox, so a
  snapshot carries it).

Paths must be absolute. Output longer than MAX_CHARS is clipped with a visible marker. Errors print
a message and exit 1 (the env shows them to the model like a failed command).
"""

import base64
import json
import os
import sys

MAX_CHARS = 16000
SNIPPET_LINES = 4
HISTORY_DIR = os.environ.get("PIVOTRL_EDITOR_HISTORY", "/var/lib/pivotrl-editor")
CLIPPED = "<response clipped><NOTE>To save on context only part of this file has been shown to you. " \
          "Use `grep -n` to find what you need, then view it with view_range.</NOTE>"


class ToolError(Exception):
    pass


def clip(text):
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS] + "\n" + CLIPPED


def numbered(text, first_line=1):
    lines = text.split("\n")
    return "\n".join(f"{i + first_line:6}\t{line}" for i, line in enumerate(lines))


def read(path):
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def write(path, text):
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def history_file(path):
    return os.path.join(HISTORY_DIR, path.strip("/").replace("/", "%") + ".json")


def push_history(path, old_text):
    os.makedirs(HISTORY_DIR, exist_ok=True)
    hist_path = history_file(path)
    stack = json.loads(read(hist_path)) if os.path.exists(hist_path) else []
    stack.append(old_text)
    write(hist_path, json.dumps(stack))


def pop_history(path):
    hist_path = history_file(path)
    stack = json.loads(read(hist_path)) if os.path.exists(hist_path) else []
    if not stack:
        raise ToolError(f"No edit history found for {path}.")
    old_text = stack.pop()
    write(hist_path, json.dumps(stack))
    return old_text


def check_path(command, path):
    if not isinstance(path, str) or not path.startswith("/"):
        raise ToolError(f"The path {path} is not an absolute path, it should start with `/`. "
                        f"Maybe you meant /testbed/{path}?")
    exists = os.path.exists(path)
    if command == "create":
        if exists:
            raise ToolError(f"File already exists at: {path}. Cannot overwrite files using command `create`.")
        return
    if not exists:
        raise ToolError(f"The path {path} does not exist. Please provide a valid path.")
    if os.path.isdir(path) and command != "view":
        raise ToolError(f"The path {path} is a directory and only the `view` command can be used on directories.")


def view(path, view_range):
    if os.path.isdir(path):
        if view_range is not None:
            raise ToolError("The `view_range` parameter is not allowed when `path` points to a directory.")
        entries = []
        base_depth = path.rstrip("/").count("/")
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
            depth = root.rstrip("/").count("/") - base_depth
            if depth >= 2:
                dirs[:] = []
            entries.append(root)
            if depth < 2:
                entries.extend(os.path.join(root, f) for f in sorted(files) if not f.startswith("."))
        body = "\n".join(sorted(set(entries)))
        return (f"Here's the files and directories up to 2 levels deep in {path}, excluding hidden items:\n"
                f"{clip(body)}")
    text = read(path)
    first = 1
    if view_range is not None:
        if (not isinstance(view_range, list) or len(view_range) != 2
                or not all(isinstance(i, int) for i in view_range)):
            raise ToolError("Invalid `view_range`. It should be a list of two integers.")
        lines = text.split("\n")
        start, end = view_range
        if not 1 <= start <= len(lines):
            raise ToolError(f"Invalid `view_range`: {view_range}. Its first element `{start}` should be "
                            f"within the range of lines of the file: [1, {len(lines)}]")
        if end != -1 and not start <= end <= len(lines):
            raise ToolError(f"Invalid `view_range`: {view_range}. Its second element `{end}` should be "
                            f"-1 or within [{start}, {len(lines)}]")
        text = "\n".join(lines[start - 1:] if end == -1 else lines[start - 1:end])
        first = start
    return f"Here's the result of running `cat -n` on {path}:\n{clip(numbered(text, first))}\n"


def snippet(path, text, around_line, n_new_lines):
    lines = text.split("\n")
    start = max(0, around_line - SNIPPET_LINES)
    end = min(len(lines), around_line + n_new_lines + SNIPPET_LINES)
    return (f"The file {path} has been edited. Here's the result of running `cat -n` on a snippet of {path}:\n"
            f"{numbered(chr(10).join(lines[start:end]), start + 1)}\n"
            f"Review the changes and make sure they are as expected. Edit the file again if necessary.")


def str_replace(path, old_str, new_str):
    if not isinstance(old_str, str) or old_str == "":
        raise ToolError("Parameter `old_str` is required for command: str_replace (and must not be empty).")
    new_str = "" if new_str is None else new_str
    text = read(path).expandtabs()
    old_str, new_str = old_str.expandtabs(), new_str.expandtabs()
    count = text.count(old_str)
    if count == 0:
        raise ToolError(f"No replacement was performed, old_str `{old_str}` did not appear verbatim in {path}.")
    if count > 1:
        lines = [i + 1 for i, line in enumerate(text.split("\n")) if old_str.split("\n")[0] in line]
        raise ToolError(f"No replacement was performed. Multiple occurrences of old_str `{old_str}` in lines "
                        f"{lines}. Please ensure it is unique.")
    push_history(path, read(path))
    new_text = text.replace(old_str, new_str)
    write(path, new_text)
    line = text.split(old_str)[0].count("\n")
    return snippet(path, new_text, line, new_str.count("\n") + 1)


def insert(path, insert_line, new_str):
    if not isinstance(new_str, str):
        raise ToolError("Parameter `new_str` is required for command: insert.")
    text = read(path).expandtabs()
    lines = text.split("\n")
    if not isinstance(insert_line, int) or not 0 <= insert_line <= len(lines):
        raise ToolError(f"Invalid `insert_line` parameter: {insert_line}. It should be within the range of "
                        f"lines of the file: [0, {len(lines)}]")
    push_history(path, read(path))
    new_lines = new_str.expandtabs().split("\n")
    write(path, "\n".join(lines[:insert_line] + new_lines + lines[insert_line:]))
    return snippet(path, "\n".join(lines[:insert_line] + new_lines + lines[insert_line:]), insert_line,
                   len(new_lines))


def main(raw):
    args = json.loads(base64.b64decode(raw).decode("utf-8"))
    command, path = args.get("command"), args.get("path")
    if command not in ("view", "create", "str_replace", "insert", "undo_edit"):
        raise ToolError(f"Unrecognized command {command}. The allowed commands are: view, create, "
                        f"str_replace, insert, undo_edit")
    check_path(command, path)
    if command == "view":
        return view(path, args.get("view_range"))
    if command == "create":
        if not isinstance(args.get("file_text"), str):
            raise ToolError("Parameter `file_text` is required for command: create.")
        os.makedirs(os.path.dirname(path) or "/", exist_ok=True)
        write(path, args["file_text"])
        return f"File created successfully at: {path}"
    if command == "str_replace":
        return str_replace(path, args.get("old_str"), args.get("new_str"))
    if command == "insert":
        return insert(path, args.get("insert_line"), args.get("new_str"))
    write(path, pop_history(path))
    return f"Last edit to {path} undone successfully. Here's the result of running `cat -n` on {path}:\n" \
           f"{clip(numbered(read(path)))}\n"


if __name__ == "__main__":
    try:
        print(main(sys.argv[1]))
    except ToolError as e:
        print(f"ERROR: {e}")
        sys.exit(1)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        print(f"ERROR: {type(e).__name__}: {e}")
        sys.exit(1)
