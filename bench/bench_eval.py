"""Evaluation speed: batched greedy vs a naive one-question-at-a-time loop, pass@k sampling, pass@512 time.

    python bench/bench_eval.py [--questions 200] [--n 512] [hydra overrides]

Uses the tiny base model of the tiny world (untrained weights generate to the full
length, the worst case). The batched and naive runs decode the same questions with
the same model, greedy, to the same max_new_tokens.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from atomic_comp.config import RunConfig, composed
from atomic_comp.evaluate import generate_greedy, sample_completions
from atomic_comp.models import load_model, load_tokenizer
from atomic_comp.pipeline import base_model, run_data
from atomic_comp.prompts import format_prompt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--questions", type=int, default=200)
    ap.add_argument("--naive", type=int, default=32, help="questions timed in the naive loop")
    ap.add_argument("--n", type=int, default=512, help="samples per question for pass@k")
    ap.add_argument("--passk-questions", type=int, default=None,
                    help="sample this many questions and extrapolate to --questions (default: all of them)")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--checkpoint", default=None, help="a trained checkpoint (default: the untrained base model)")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    cfg: RunConfig = composed(args.overrides)
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(cfg.cache_dir or tmp)
        data = run_data(cfg, str(cache))
        ckpt = args.checkpoint or base_model(cfg, data, cache / "models")[0]
        model, tok = load_model(ckpt), load_tokenizer(ckpt)
        test = data.splits["test"]
        prompts = [format_prompt(test[i]) for i in range(min(args.questions, len(test)))]

        print(f"model: {cfg.model.name} ({ckpt}), {torch.get_num_threads()} threads, "
              f"max_new_tokens={args.max_new_tokens}", flush=True)
        t0 = time.perf_counter()
        generate_greedy(model, tok, prompts, batch_size=cfg.eval.batch_size, max_new_tokens=args.max_new_tokens)
        batched = len(prompts) / (time.perf_counter() - t0)
        print(f"greedy batched (batch {cfg.eval.batch_size}): {batched:.1f} questions/s over {len(prompts)}",
              flush=True)

        t0 = time.perf_counter()
        for p in prompts[: args.naive]:
            enc = tok(p, return_tensors="pt")
            with torch.no_grad():
                model.generate(**enc, do_sample=False, max_new_tokens=args.max_new_tokens,
                               pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        naive = args.naive / (time.perf_counter() - t0)
        print(f"greedy naive loop: {naive:.2f} questions/s over {args.naive}; speed-up {batched / naive:.1f}x",
              flush=True)

        sampled = prompts[: args.passk_questions or len(prompts)]
        t0 = time.perf_counter()
        sample_completions(model, tok, sampled, args.n, 1.0, 1.0, args.max_new_tokens)
        rate = len(sampled) * args.n / (time.perf_counter() - t0)
    how = "measured" if len(sampled) == len(prompts) else f"extrapolated from {len(sampled)} questions"
    print(f"pass@{args.n} sampling: {rate:,.0f} samples/s; {len(prompts)} questions x {args.n} samples: "
          f"{len(prompts) * args.n / rate:,.0f} s ({how})")


if __name__ == "__main__":
    main()
