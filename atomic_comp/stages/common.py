"""What SFT and RL stages share: device choice, trainer arguments, resume, and the checkpoint they publish."""

from __future__ import annotations

import json
import shutil
import time
from collections import deque
from pathlib import Path

import torch
from transformers import TrainerCallback
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import sort_checkpoints

from atomic_comp.models import load_model, load_tokenizer, save_checkpoint


def score_labelled_positions_only() -> None:
    """Let TRL's fused LM head score only the positions that carry a label, on CPU as on CUDA.

    TRL 1.x scores every position off Triton devices, so that compiled backends (Neuron) see fixed tile
    shapes. Eager CPU has no such constraint, and with a completion-only loss ~80% of the positions are
    prompt: the same loss comes out ~1.5x faster per SFT step (docs/tuning.md; equality tested).
    """
    import trl.trainer.utils as trl_utils

    original = getattr(trl_utils, "_use_triton", None)
    if original is None or getattr(original, "_atomic_comp", False):
        return  # another TRL: train as it ships (tests/test_stages.py says so)

    def compact(device) -> bool:
        return device.type == "cpu" or original(device)

    compact._atomic_comp = True
    trl_utils._use_triton = compact


score_labelled_positions_only()


def pick_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def trainer_args(cfg, work: Path, seed: int, device: str, deepspeed: str | None, deterministic: bool = False) -> dict:
    """Keyword arguments common to TRL's SFTConfig and GRPOConfig."""
    return dict(
        output_dir=str(work / "trainer"),
        learning_rate=cfg.lr,
        warmup_steps=cfg.warmup_ratio,  # a float < 1 is a ratio of the total steps
        lr_scheduler_type="cosine",
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=1,
        seed=seed,
        data_seed=seed,
        full_determinism=deterministic,
        bf16=cfg.bf16,
        gradient_checkpointing=cfg.gradient_checkpointing,
        use_cpu=device == "cpu",
        report_to="none",  # W&B is fed by atomic_comp.tracking, which never fails a stage
        dataloader_num_workers=0,
        deepspeed=deepspeed,
        disable_tqdm=True,  # ProgressCallback reports instead: one line every few seconds, with an ETA
    )


class ProgressCallback(TrainerCallback):
    """Reports step, seconds per step and the stage's ETA every `every` seconds, so no stage looks hung. The
    pace is that of the last `window` seconds: a stage that was paused or shared its cores for a while
    is timed by how it runs now, not by its average since the start."""

    def __init__(self, report, every: float = 5.0, window: float = 60.0):
        self.report, self.every, self.window = report, every, window

    def on_train_begin(self, args, state, control, **kwargs):
        self.last = time.perf_counter()
        self.marks = deque([(self.last, state.global_step)])  # (time, step); the step is > 0 when resuming

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        if not state.is_world_process_zero or (now - self.last < self.every and state.global_step < state.max_steps):
            return
        self.last = now
        self.marks.append((now, state.global_step))
        while len(self.marks) > 2 and now - self.marks[1][0] >= self.window:
            self.marks.popleft()  # keep one mark at least `window` old
        (t0, s0), (t1, s1) = self.marks[0], self.marks[-1]
        per_step = (t1 - t0) / max(s1 - s0, 1)
        self.report({"step": state.global_step, "max_steps": state.max_steps, "sec_per_step": round(per_step, 2),
                     "eta": round(per_step * (state.max_steps - state.global_step))})


def callbacks(progress) -> list | None:
    return [ProgressCallback(progress)] if progress else None


def lora_config(lora):
    if not lora.enabled:
        return None
    from peft import LoraConfig

    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=list(lora.target_modules), task_type="CAUSAL_LM")


def last_complete_checkpoint(folder: Path) -> str | None:
    """The newest trainer checkpoint that was fully written, or None. The Trainer writes trainer_state.json
    last, so a kill mid-save leaves a checkpoint without a readable one: it is removed, so that neither the
    resume nor the Trainer's checkpoint rotation picks it up."""
    if not folder.is_dir():
        return None
    for path in reversed(sort_checkpoints(str(folder))):  # newest step first
        try:
            json.loads((Path(path) / TRAINER_STATE_NAME).read_text())
            return path
        except (OSError, ValueError):
            shutil.rmtree(path, ignore_errors=True)  # data-parallel ranks may race to remove it
    return None


def train_and_publish(trainer, work: Path, tokenizer, start: dict) -> dict:
    """Train (resuming from the stage's last complete trainer checkpoint, if a killed run left one) and save
    the model."""
    last = last_complete_checkpoint(work / "trainer")
    t0 = time.perf_counter()
    out = trainer.train(resume_from_checkpoint=last)
    seconds = time.perf_counter() - t0
    if trainer.is_world_process_zero():  # data-parallel ranks share one checkpoint
        save_checkpoint(trainer.model, tokenizer, work / "checkpoint")
    trainer.accelerator.wait_for_everyone()
    return {
        **start,
        "resumed_from": Path(last).name if last else None,
        "steps": trainer.state.global_step,
        "train_seconds": seconds,
        "train_loss": out.training_loss,
        "log_history": trainer.state.log_history,
    }


def fingerprint(model) -> str:
    """A short hash of the weights, so a chained stage can show which checkpoint it started from."""
    import hashlib

    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def freeze_modules(model, names) -> None:
    """Stop the gradient of every parameter under a module whose own name (the last part of its dotted path)
    is in `names`: `self_attn` freezes all attention layers. The Trainer's optimiser skips them."""
    names = set(names)
    for path, module in model.named_modules():
        if path.rsplit(".", 1)[-1] in names:
            for p in module.parameters():
                p.requires_grad_(False)


def load_parent(parent: Path, dtype: str, freeze=()):
    model = load_model(parent, dtype)
    freeze_modules(model, freeze)
    return model, load_tokenizer(parent), {"parent": str(parent), "parent_fingerprint": fingerprint(model),
                                           "trainable_params": model.num_parameters(only_trainable=True)}
