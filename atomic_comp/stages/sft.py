"""SFT stage: TRL's SFTTrainer on prompt/completion pairs, loss on the completion only.

Parametric biographies, when mixed in, are rows with an empty prompt: plain language modelling.
"""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset
from trl import SFTConfig as TRLSFTConfig
from trl import SFTTrainer

from .common import callbacks, load_parent, lora_config, trainer_args, train_and_publish


def run(parent: Path, cfg, data: Dataset, work: Path, seed: int, device: str, dtype: str = "float32",
        deepspeed: str | None = None, progress=None, deterministic: bool = False) -> dict:
    """`data` has prompt/completion columns. Writes work/checkpoint; returns training metrics."""
    model, tokenizer, start = load_parent(parent, dtype, cfg.freeze)
    args = TRLSFTConfig(
        **trainer_args(cfg, work, seed, device, deepspeed, deterministic),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        weight_decay=cfg.weight_decay,
        max_length=cfg.max_length,
        completion_only_loss=True,
        packing=False,
        dataset_num_proc=None,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                         peft_config=lora_config(cfg.lora), callbacks=callbacks(progress))
    return train_and_publish(trainer, work, tokenizer, start)
