"""Rewards for RL stages: exact match of the parsed answer (the paper's), and an optional format bonus."""

from __future__ import annotations

from atomic_comp.prompts import ANSWER_MARKER, exact_match


def _text(completion) -> str:
    # TRL passes strings for plain prompts and message lists for conversational ones
    if isinstance(completion, list):
        return completion[-1]["content"] if completion else ""
    return completion


def exact_match_reward(completions, answer, **kwargs) -> list[float]:
    """1.0 when the text after the last 'So, the answer is:' matches the gold answer (whitespace/case-normalised)."""
    return [1.0 if exact_match(_text(c), a) else 0.0 for c, a in zip(completions, answer)]


def format_reward(completions, **kwargs) -> list[float]:
    """1.0 when the completion states an answer with the marker at all."""
    return [1.0 if ANSWER_MARKER in _text(c) else 0.0 for c in completions]
