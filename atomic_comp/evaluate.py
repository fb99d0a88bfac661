"""Greedy exact match on the test split, per task, level, hop count and final-hop type.

Generation is batched with left padding and the KV cache. The answer is the text
after the last 'So, the answer is:'; a missing marker counts as wrong.
"""

from __future__ import annotations

from collections import defaultdict

import torch

from atomic_comp.prompts import exact_match, format_prompt, parse_answer


def select_items(test, levels: list[str], tasks: list[str], max_items: int | None) -> list[dict]:
    """The first max_items test items of each task x level (the test set's own order, fixed before any tuning)."""
    taken: dict[tuple, int] = defaultdict(int)
    out = []
    for it in test:
        cell = (it["task"], it["level"])
        if it["task"] in tasks and it["level"] in levels and (max_items is None or taken[cell] < max_items):
            taken[cell] += 1
            out.append(it)
    return out


@torch.no_grad()
def generate_greedy(model, tokenizer, prompts: list[str], batch_size: int, max_new_tokens: int) -> list[str]:
    model.eval()
    device = next(model.parameters()).device
    # longest first, so each batch pads little; outputs are put back in order
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    outputs: list[str] = [""] * len(prompts)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True).to(device)
        gen = model.generate(**enc, do_sample=False, max_new_tokens=max_new_tokens, use_cache=True,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        texts = tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        for i, text in zip(idx, texts):
            outputs[i] = text
    return outputs


def chain_correct(item: dict, output: str) -> bool:
    """Every hop right: the final answer matches and each intermediate entity is written, in order."""
    if not exact_match(output, item["answer"]):
        return False
    pos = 0
    for name in item["entities"][1:-1]:
        j = output.find(name, pos)
        if j < 0:
            return False
        pos = j + len(name)
    return True


def _em(rows: list[dict]) -> dict:
    return {"em": sum(r["correct"] for r in rows) / len(rows) if rows else 0.0, "n": len(rows)}


def score(predictions: list[dict]) -> dict:
    """The metrics block of results.json for one stage."""
    out: dict = {}
    by = defaultdict(list)
    for p in predictions:
        by[(p["task"], p["level"])].append(p)
    for (task, level), rows in by.items():
        out.setdefault(task, {})[level] = _em(rows)
    hops = defaultdict(list)
    final = defaultdict(list)
    chain = defaultdict(list)
    for p in predictions:
        hops[(p["task"], p["level"], str(p["hops"]))].append(p)
        final[(p["task"], p["level"], p["final_hop"])].append(p)
        chain[(p["task"], p["level"])].append({"correct": p["chain_correct"]})
    out["by_hops"] = _nest(hops)
    out["by_final_hop"] = _nest(final)
    out["chain_correct"] = _nest(chain)
    return out


def _nest(groups: dict) -> dict:
    out: dict = {}
    for (a, b, *c), rows in sorted(groups.items()):
        node = out.setdefault(a, {})
        if c:
            node = node.setdefault(b, {})
            node[c[0]] = _em(rows)
        else:
            node[b] = _em(rows)
    return out


def evaluate(model, tokenizer, items: list[dict], batch_size: int, max_new_tokens: int,
             pipeline: str = "", stage: str = "") -> tuple[dict, list[dict]]:
    """(metrics, predictions) for greedy decoding of `items`."""
    outputs = generate_greedy(model, tokenizer, [format_prompt(it) for it in items], batch_size, max_new_tokens)
    predictions = []
    for it, out in zip(items, outputs):
        predictions.append({
            "pipeline": pipeline, "stage": stage, "task": it["task"], "level": it["level"], "hops": it["hops"],
            "final_hop": it["hop_groups"][-1], "question": it["question"], "answer": it["answer"],
            "output": out, "prediction": parse_answer(out), "correct": exact_match(out, it["answer"]),
            "chain_correct": chain_correct(it, out),
        })
    return score(predictions), predictions
