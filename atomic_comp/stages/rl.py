"""RL stage: TRL's GRPOTrainer with the exact-match reward.

TRL logs the reward mean (`reward`), the accuracy (`rewards/exact_match_reward/mean`) and the
share of groups whose rewards have zero variance (`frac_reward_zero_std`), which carry no signal.
"""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from atomic_comp.evaluate import answer_budget

from .common import callbacks, load_parent, lora_config, trainer_args, train_and_publish
from .reward import exact_match_reward, format_reward


def run(parent: Path, cfg, data: Dataset, work: Path, seed: int, device: str, dtype: str = "float32",
        deepspeed: str | None = None, progress=None, deterministic: bool = False) -> dict:
    """`data` has prompt, answer and gold (chain) columns. Writes work/checkpoint; returns training metrics."""
    model, tokenizer, start = load_parent(parent, dtype, cfg.freeze)
    budget = answer_budget(tokenizer, data["gold"], cfg.max_completion_length, "stage.rl.max_completion_length")
    rewards, weights = [exact_match_reward], [1.0]
    if cfg.format_reward > 0:
        rewards.append(format_reward)
        weights.append(cfg.format_reward)
    args = GRPOConfig(
        **trainer_args(cfg, work, seed, device, deepspeed, deterministic),
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.prompts_per_step * cfg.num_generations,
        gradient_accumulation_steps=1,
        num_generations=cfg.num_generations,
        beta=cfg.beta,
        temperature=cfg.temperature,
        max_completion_length=budget,
        loss_type=cfg.loss_type,
        use_vllm=cfg.use_vllm,
        reward_weights=weights,
        log_completions=False,
    )
    trainer = GRPOTrainer(model=model, reward_funcs=rewards, args=args, train_dataset=data,
                          processing_class=tokenizer, peft_config=lora_config(cfg.lora), callbacks=callbacks(progress))
    return {**train_and_publish(trainer, work, tokenizer, start), "max_completion_length": budget}
