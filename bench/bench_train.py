"""Training throughput: SFT tokens/s, GRPO completions/s and model FLOP utilisation.

    python bench/bench_train.py                       # tiny model, tiny world, this machine
    python bench/bench_train.py model=qwen2.5-0.5b stage=gpu device=cuda   # on a GPU box

MFU = 6 * params * tokens/s over a matrix-multiply peak measured in the same run
(fp32 on CPU, bf16 on GPU).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

from atomic_comp.config import RunConfig, composed, validate_run
from atomic_comp.pipeline import _rl_rows, _sft_rows, base_model, run_data, stage_config
from atomic_comp.recipe import stage_items
from atomic_comp.stages import rl, sft
from atomic_comp.stages.common import pick_device


def matmul_peak(device: str, dtype: torch.dtype, n: int = 2048, reps: int = 10) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def main(overrides: list[str]) -> None:
    cfg: RunConfig = composed(["pipeline=sft_mem_ctx__rl_comp", *overrides])
    validate_run(cfg)
    device = pick_device(cfg.device)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    peak = matmul_peak(device, dtype)
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(cfg.cache_dir or tmp)
        data = run_data(cfg, str(cache))
        parent, _, _ = base_model(cfg, data, cache / "models")
        from atomic_comp.models import load_model

        params = load_model(parent, cfg.model.dtype).num_parameters()
        spec_sft, spec_rl = cfg.pipeline.stages
        hyper, pool, _ = stage_config(cfg, spec_sft, True)
        hyper.max_steps, hyper.save_steps, hyper.logging_steps = 30, 10_000, 10
        rows = _sft_rows(stage_items(data, pool, list(spec_sft.tasks), cfg.recipe))
        m = sft.run(parent, hyper, rows, Path(tmp) / "sft", cfg.seed, device, cfg.model.dtype)
        tokens = max(h.get("num_tokens", 0) for h in m["log_history"])
        tok_s = tokens / m["train_seconds"]

        hyper_rl, pool_rl, _ = stage_config(cfg, spec_rl, False)
        hyper_rl.max_steps, hyper_rl.save_steps, hyper_rl.logging_steps = 5, 10_000, 1
        rows_rl = _rl_rows(stage_items(data, pool_rl, list(spec_rl.tasks), cfg.recipe))
        r = rl.run(Path(tmp) / "sft" / "checkpoint", hyper_rl, rows_rl, Path(tmp) / "rl", cfg.seed, device,
                   cfg.model.dtype)
        completions = r["steps"] * hyper_rl.prompts_per_step * hyper_rl.num_generations
    print(f"device: {device} ({torch.get_num_threads()} threads), model: {cfg.model.name}, {params / 1e6:.2f}M params")
    print(f"matmul peak: {peak / 1e9:,.0f} GFLOP/s ({str(dtype).replace('torch.', '')})")
    print(f"SFT: {tok_s:,.0f} tokens/s over {m['steps']} steps of batch {hyper.batch_size}; "
          f"MFU {6 * params * tok_s / peak:.1%}")
    print(f"GRPO: {completions / r['train_seconds']:.1f} completions/s "
          f"({hyper_rl.prompts_per_step} prompts x {hyper_rl.num_generations} samples, "
          f"up to {r['max_completion_length']} tokens, {r['steps']} steps)")


if __name__ == "__main__":
    main(sys.argv[1:])
