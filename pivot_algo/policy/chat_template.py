"""The project's tool-aware ChatML template and the helpers that turn conversations into token ids.

Why a template of our own: SmolLM2's (and most small models') template cannot render `tools`,
assistant `tool_calls` or `tool` messages. Ours is ChatML (`<|im_start|>role\\n...<|im_end|>\\n`)
with Hermes/Qwen-style tools:

- `tools` go into the system message: a short instruction plus one JSON schema per line inside
  `<tools></tools>`;
- an assistant tool call renders as `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`
  (json.dumps with default separators, ensure_ascii=False), one per line after the (trimmed)
  content; this is exactly what the Hermes parser in pivot_envs reads back;
- consecutive `tool` messages render as one `user` turn of `<tool_response>...</tool_response>` blocks;
- `add_generation_prompt` appends `<|im_start|>assistant\\n`.

The property training relies on: the prompt of turn k (the conversation before the k-th assistant
message, plus the generation prompt) tokenizes to exactly the first tokens of the whole conversation
rendered once, and the assistant message's tokens follow through `<|im_end|>`. Two choices make it
hold: `<|im_start|>`/`<|im_end|>` are special tokens (no BPE merge crosses them), and assistant
content is trimmed, so the token after `assistant\\n` never starts with whitespace that would merge
with that newline. `prompt_and_completion_ids` checks it on every call and raises otherwise.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from importlib import resources
from typing import Any

from pivot_algo.policy.errors import ChatTemplateError

TEMPLATE_NAME = "chatml_tools.jinja"
END_OF_TURN = "<|im_end|>"
START_OF_TURN = "<|im_start|>"
GENERATION_PROMPT = "<|im_start|>assistant\n"


def chat_template() -> str:
    """The text of the tool-aware template shipped in the package."""
    return resources.files("pivot_algo.policy").joinpath("templates", TEMPLATE_NAME).read_text(encoding="utf-8")


def _content_text(content: Any) -> str:
    """OpenAI content may be a string, None, or a list of parts; the template wants a string."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and part.get("type", "text") == "text":
                parts.append(str(part.get("text", "")))
            elif isinstance(part, str):
                parts.append(part)
            else:
                raise ChatTemplateError(f"message content part {part!r} is not text; only text parts can be rendered")
        return "".join(parts)
    raise ChatTemplateError(f"message content must be a string, None or a list of text parts, got {type(content).__name__}")


def normalize_messages(messages: Sequence[dict]) -> list[dict]:
    """Canonical form for rendering: string content, tool calls as {"name", "arguments"} with the
    arguments decoded from JSON when they are a JSON object (so that `{"a":1}` and `{"a": 1}`
    render identically); undecodable argument strings are kept verbatim."""
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m:
            raise ChatTemplateError(f"messages[{i}] must be a dict with a 'role', got {m!r}")
        role = m["role"]
        if role not in ("system", "user", "assistant", "tool"):
            raise ChatTemplateError(f"messages[{i}] has role {role!r}; expected system, user, assistant or tool")
        if role == "system" and i != 0:
            raise ChatTemplateError(f"messages[{i}] is a system message; only messages[0] may be one")
        msg: dict[str, Any] = {"role": role, "content": _content_text(m.get("content"))}
        if role == "assistant" and m.get("tool_calls"):
            calls = []
            for j, tc in enumerate(m["tool_calls"]):
                fn = tc.get("function", tc) if isinstance(tc, dict) else None
                if not isinstance(fn, dict) or "name" not in fn:
                    raise ChatTemplateError(f"messages[{i}].tool_calls[{j}] needs a function name, got {tc!r}")
                args = fn.get("arguments", {})
                if isinstance(args, str):
                    try:
                        decoded = json.loads(args) if args.strip() else {}
                        if isinstance(decoded, dict):
                            args = decoded
                    except json.JSONDecodeError:
                        pass
                calls.append({"name": fn["name"], "arguments": copy.deepcopy(args)})
            msg["tool_calls"] = calls
        out.append(msg)
    return out


def render(tokenizer: Any, messages: Sequence[dict], tools: Sequence[dict] | None = None, *,
           add_generation_prompt: bool = False) -> str:
    """Render with the tokenizer's chat template (ours, once `install_template` ran)."""
    return tokenizer.apply_chat_template(normalize_messages(messages), tools=list(tools) if tools else None,
                                         add_generation_prompt=add_generation_prompt, tokenize=False)


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of rendered text. No BOS: the template is the whole sequence (SmolLM2's tokenizer
    would otherwise prepend `<|im_start|>` as its BOS)."""
    return list(tokenizer.encode(text, add_special_tokens=False))


def prompt_ids(tokenizer: Any, messages: Sequence[dict], tools: Sequence[dict] | None = None) -> list[int]:
    return encode(tokenizer, render(tokenizer, messages, tools, add_generation_prompt=True))


def prompt_and_completion_ids(tokenizer: Any, messages: Sequence[dict], assistant: dict,
                              tools: Sequence[dict] | None = None) -> tuple[list[int], list[int]]:
    """(prompt ids, assistant message ids through `<|im_end|>`), both cut from ONE tokenization of the
    full conversation, after checking that the separately tokenized prompt is exactly its prefix."""
    if assistant.get("role") != "assistant":
        raise ChatTemplateError(f"the completion must be an assistant message, got role {assistant.get('role')!r}")
    prompt = prompt_ids(tokenizer, messages, tools)
    full = encode(tokenizer, render(tokenizer, list(messages) + [assistant], tools))
    if full[: len(prompt)] != prompt:
        at = next((i for i, (a, b) in enumerate(zip(prompt, full)) if a != b), min(len(prompt), len(full)))
        raise ChatTemplateError(
            f"the prompt's tokens are not a prefix of the full conversation's (first difference at token {at}: "
            f"{tokenizer.convert_ids_to_tokens(prompt[at:at + 3])} vs {tokenizer.convert_ids_to_tokens(full[at:at + 3])}). "
            "The tokenizer must have <|im_start|>/<|im_end|> as special tokens and the template must be "
            "pivot_algo's chatml_tools.jinja (install_template)")
    end_id = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    rest = full[len(prompt):]
    if end_id not in rest:
        raise ChatTemplateError(f"the rendered assistant message has no {END_OF_TURN} token; is the chat template ours?")
    return prompt, rest[: rest.index(end_id) + 1]


def install_template(tokenizer: Any) -> None:
    """Make the tool-aware template the tokenizer's chat template (saved with it by save_pretrained)."""
    for tok in (START_OF_TURN, END_OF_TURN):
        tid = tokenizer.convert_tokens_to_ids(tok)
        if tid is None or tid == tokenizer.unk_token_id or tokenizer.convert_ids_to_tokens(tid) != tok:
            raise ChatTemplateError(f"tokenizer has no single token for {tok!r}; the ChatML template needs it as a special token")
    tokenizer.chat_template = chat_template()
