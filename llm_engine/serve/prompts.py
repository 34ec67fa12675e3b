"""Chat messages -> prompt token ids: the checkpoint's chat template, or a plain fallback.

The fallback (for checkpoints without a template) writes each message as `Role: content`
followed by a blank line, then `Assistant:` for the model to continue:

    System: You answer briefly.

    User: Why is the sky blue?

    Assistant:

An earlier answer is written right after its `Assistant:`, as the model wrote it there: a space is put between
them only when the answer does not begin with one. So an answer sent back as it came (` Because ...`) gives the
tokens the model generated, and the model server's prompt cache reuses them.
"""

from __future__ import annotations

LABELS = {"system": "System", "user": "User", "assistant": "Assistant"}


def _turn(m: dict) -> str:
    content = m["content"]
    if m["role"] == "assistant" and content[:1].isspace():
        return f"Assistant:{content}\n\n"
    return f"{LABELS[m['role']]}: {content}\n\n"


def fallback_prompt(messages: list[dict]) -> str:
    return "".join(_turn(m) for m in messages) + "Assistant:"


def chat_tokens(tokenizer, messages: list[dict]) -> list[int]:
    """Token ids for `messages` (each {"role", "content"}), ready for the assistant's reply.

    Raises ValueError when the template refuses the messages (many refuse roles that do not
    alternate, for instance); the message is the template's own.
    """
    if not tokenizer.has_chat_template:
        return tokenizer.encode(fallback_prompt(messages))
    try:
        return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True))
    except Exception as e:  # jinja2 raises TemplateError, templates call raise_exception()
        raise ValueError(f"the chat template refused these messages: {e}") from None
