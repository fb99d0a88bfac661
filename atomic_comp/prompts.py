"""One prompt format for every stage and for evaluation, and the one answer parser.

prompt:     instruction (if any), context (if any), question, then "Answer:"
completion: " " + chain of thought ending in "So, the answer is: X"
"""

from __future__ import annotations

import re

ANSWER_MARKER = "So, the answer is:"
_WS = re.compile(r"\s+")


def format_prompt(item: dict) -> str:
    parts = [item["instruction"]] if item.get("instruction") else []
    if item.get("context"):
        parts.append(f"Context:\n{item['context']}")
    parts.append(f"Question: {item['question']}")
    parts.append("Answer:")
    return "\n".join(parts)


def format_completion(item: dict) -> str:
    return " " + item["answer_cot"]


def normalize(text: str) -> str:
    return _WS.sub(" ", text).strip().strip(".").strip().lower()


def parse_answer(output: str) -> str | None:
    """The text after the last answer marker, up to the end of its line; None without a marker."""
    i = output.rfind(ANSWER_MARKER)
    if i < 0:
        return None
    return output[i + len(ANSWER_MARKER):].split("\n", 1)[0].strip()


def exact_match(output: str, gold: str) -> bool:
    pred = parse_answer(output)
    return pred is not None and normalize(pred) == normalize(gold)
