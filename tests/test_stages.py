"""SFT and GRPO stages through TRL on tiny models (TRL-test style: assert that things moved)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from datasets import Dataset

from atomic_comp.config import RLConfig, SFTConfig
from atomic_comp.evaluate import GOLD_SLACK, gold_tokens
from atomic_comp.models import build_tiny_model, build_tokenizer, load_model, load_tokenizer, save_checkpoint
from atomic_comp.stages import rl, sft
from atomic_comp.stages.common import fingerprint

from .conftest import save_tiny_qwen

pytestmark = pytest.mark.slow

COLORS = ["red", "blue", "green", "gold"]
PROMPTS = [f"Question: what colour is item {i}? Answer:" for i in range(16)]
MODEL = SimpleNamespace(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2,
                        max_position_embeddings=128, rope_theta=10000.0)


def _colour_rows() -> Dataset:
    return Dataset.from_dict({"prompt": [p for p in PROMPTS for _ in COLORS],
                              "completion": [f" So, the answer is: {c}" for _ in PROMPTS for c in COLORS]})


@pytest.fixture(scope="module", params=["tiny", "qwen2"])
def colour_sft(tmp_path_factory, request) -> Path:
    """A tiny model that SFT taught the answer format, and to answer each colour a quarter of the time: the
    word-level tiny Llama trained from scratch, and a Qwen2 checkpoint with a byte-level BPE tokenizer (the
    cluster's kind of model, whose end of text is not the tiny tokenizer's)."""
    root = tmp_path_factory.mktemp("colour")
    texts = [p + c for p, c in zip(_colour_rows()["prompt"], _colour_rows()["completion"])]
    if request.param == "qwen2":
        save_tiny_qwen(root / "base", texts)
    else:
        tok = build_tokenizer(texts)
        save_checkpoint(build_tiny_model(MODEL, tok, seed=0), tok, root / "base")
    metrics = sft.run(root / "base", SFTConfig(lr=3e-3, max_steps=200, batch_size=16, save_steps=1000,
                                               logging_steps=10), _colour_rows(), root / "sft", 0, "cpu")
    return root / "sft" / "checkpoint", metrics


def test_sft_lowers_the_loss_and_raises_training_accuracy(colour_sft):
    _, metrics = colour_sft
    logs = [h for h in metrics["log_history"] if "loss" in h]
    assert logs[-1]["loss"] < 0.5 * logs[0]["loss"]
    assert logs[-1]["mean_token_accuracy"] > logs[0]["mean_token_accuracy"] + 0.4
    assert metrics["steps"] == 200 and metrics["resumed_from"] is None


def test_sft_on_world_items_learns_the_chain(tiny_data, tmp_path):
    """Completion-only loss on real items: the chains of thought get likelier, prompts are not trained."""
    from atomic_comp.pipeline import _sft_rows

    items = tiny_data.splits["train_sft"].select(range(32))
    rows = _sft_rows(items)
    tok = build_tokenizer(p + c for p, c in zip(rows["prompt"], rows["completion"]))
    save_checkpoint(build_tiny_model(MODEL, tok, seed=0), tok, tmp_path / "base")
    metrics = sft.run(tmp_path / "base", SFTConfig(lr=3e-3, max_steps=40, batch_size=8, save_steps=1000,
                                                   logging_steps=5), rows, tmp_path / "sft", 0, "cpu")
    logs = [h for h in metrics["log_history"] if "loss" in h]
    assert logs[-1]["loss"] < logs[0]["loss"] - 1.0
    assert logs[-1]["mean_token_accuracy"] > logs[0]["mean_token_accuracy"] + 0.2


def test_grpo_changes_parameters_and_raises_the_reward(colour_sft, tmp_path):
    ckpt, _ = colour_sft
    rows = Dataset.from_dict({"prompt": PROMPTS, "answer": ["red"] * len(PROMPTS),
                              "gold": [" So, the answer is: red"] * len(PROMPTS)})
    # max_completion_length null: the samples' budget is the gold chain's length in this tokenizer, plus slack
    cfg = RLConfig(lr=1e-3, max_steps=24, prompts_per_step=8, num_generations=8, save_steps=1000, logging_steps=1)
    metrics = rl.run(ckpt, cfg, rows, tmp_path / "rl", 0, "cpu")
    assert metrics["max_completion_length"] == gold_tokens(load_tokenizer(ckpt), rows["gold"][:1])[0] + GOLD_SLACK
    rewards = [h["reward"] for h in metrics["log_history"] if "reward" in h]
    assert len(rewards) == 24
    assert 0.0 < sum(rewards[:6]) / 6 < 0.6  # the SFT model solves it sometimes
    assert sum(rewards[-6:]) / 6 > sum(rewards[:6]) / 6 + 0.05
    logged = metrics["log_history"][0]
    assert "frac_reward_zero_std" in logged and "rewards/exact_match_reward/mean" in logged
    assert metrics["parent_fingerprint"] == fingerprint(load_model(ckpt))
    assert fingerprint(load_model(tmp_path / "rl" / "checkpoint")) != metrics["parent_fingerprint"]
    assert (tmp_path / "rl" / "checkpoint" / "model.safetensors").is_file()
    assert not list((tmp_path / "rl" / "checkpoint").glob("*.bin"))


def test_lora_stage_trains_adapters_and_saves_a_merged_checkpoint(colour_sft, tmp_path):
    ckpt, _ = colour_sft
    from atomic_comp.config import LoRAConfig

    cfg = SFTConfig(lr=1e-3, max_steps=5, batch_size=16, save_steps=1000, logging_steps=1,
                    lora=LoRAConfig(enabled=True, r=4, alpha=8, target_modules=["q_proj", "v_proj"]))
    sft.run(ckpt, cfg, _colour_rows(), tmp_path / "lora", 0, "cpu")
    merged = load_model(tmp_path / "lora" / "checkpoint")
    base = load_model(ckpt)
    assert not any("lora" in n for n, _ in merged.named_parameters())
    changed = {n for (n, a), (_, b) in zip(merged.named_parameters(), base.named_parameters()) if not torch.equal(a, b)}
    assert changed and all(("q_proj" in n or "v_proj" in n) for n in changed)


def test_frozen_modules_keep_their_parents_weights_and_the_rest_trains(colour_sft, tmp_path):
    """stage.sft.freeze=[self_attn]: every attention weight is its parent's, bit for bit, while the MLPs move."""
    ckpt, _ = colour_sft
    cfg = SFTConfig(lr=1e-3, max_steps=5, batch_size=16, save_steps=1000, logging_steps=1, freeze=["self_attn"])
    metrics = sft.run(ckpt, cfg, _colour_rows(), tmp_path / "frozen", 0, "cpu")
    trained = dict(load_model(tmp_path / "frozen" / "checkpoint").named_parameters())
    base = dict(load_model(ckpt).named_parameters())
    changed = {n for n in base if not torch.equal(base[n], trained[n])}
    attention = {n for n in base if ".self_attn." in n}
    assert attention and not changed & attention
    assert any(".mlp." in n for n in changed)
    assert metrics["trainable_params"] == sum(p.numel() for n, p in base.items() if n not in attention)


def test_fused_head_on_cpu_scores_only_labelled_positions_and_matches_plain_cross_entropy():
    """atomic_comp's TRL patch: the compact fused LM head gives the model's own completion-only loss and gradient."""
    import trl.trainer.utils as trl_utils
    from trl.trainer.utils import add_fused_lm_head

    import atomic_comp.stages.common  # noqa: F401  (applies the patch)

    assert trl_utils._use_triton(torch.device("cpu"))
    rows = _colour_rows()
    tok = build_tokenizer([p + c for p, c in zip(rows["prompt"], rows["completion"])])
    model = build_tiny_model(MODEL, tok, seed=0)
    ids = [tok(p + c)["input_ids"] for p, c in zip(rows["prompt"][:6], rows["completion"][:6])]
    width = max(map(len, ids)) + 3
    input_ids = torch.tensor([x + [tok.pad_token_id] * (width - len(x)) for x in ids])
    labels = input_ids.clone()
    prompt_len = len(tok(rows["prompt"][0])["input_ids"])
    labels[:, :prompt_len] = -100  # completion-only, as SFTTrainer masks it
    for i, x in enumerate(ids):
        labels[i, len(x):] = -100
    mask = (labels != -100).long()

    def loss_and_grad(**kw):
        model.zero_grad()
        out = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), labels=labels, **kw)
        out.loss.backward()
        return out.loss.item(), model.lm_head.weight.grad.clone()

    plain, plain_grad = loss_and_grad()
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    fused, fused_grad = loss_and_grad(fused_lm_head=True)
    assert mask.sum() < mask.numel() / 2  # most positions carry no label, so compaction matters
    assert fused == pytest.approx(plain, rel=1e-5)
    torch.testing.assert_close(fused_grad, plain_grad, rtol=1e-4, atol=1e-6)


def test_resume_skips_a_checkpoint_a_kill_cut_short(tmp_path):
    """The Trainer writes trainer_state.json last: a checkpoint without a readable one was cut short by a kill
    (a SLURM requeue mid-save) and must be neither resumed from nor left for the rotation."""
    from atomic_comp.stages.common import last_complete_checkpoint

    trainer = tmp_path / "trainer"
    assert last_complete_checkpoint(trainer) is None
    for step, state in ((5, '{"global_step": 5}'), (10, None), (15, '{"global_st')):
        ckpt = trainer / f"checkpoint-{step}"
        ckpt.mkdir(parents=True)
        (ckpt / "model.safetensors").write_bytes(b"weights")
        if state is not None:
            (ckpt / "trainer_state.json").write_text(state)
    (trainer / "checkpoint-notes").mkdir()
    assert last_complete_checkpoint(trainer) == str(trainer / "checkpoint-5")
    assert sorted(p.name for p in trainer.iterdir()) == ["checkpoint-5", "checkpoint-notes"]


def test_progress_times_the_eta_by_the_recent_pace_not_the_average_since_the_start(monkeypatch):
    """A stage paused (a suspended job, cores lent to another run) for ten minutes and then back at 1 s/step
    reports 1 s/step and the ETA that follows from it, not the average the pause inflated."""
    from transformers import TrainerControl, TrainerState

    from atomic_comp.stages import common

    clock = [0.0]
    monkeypatch.setattr(common.time, "perf_counter", lambda: clock[0])
    reports = []
    callback = common.ProgressCallback(reports.append, every=5.0, window=60.0)
    state = TrainerState(max_steps=1000, global_step=100)  # resumed at step 100
    callback.on_train_begin(None, state, TrainerControl())

    def run(steps, sec):
        for _ in range(steps):
            clock[0] += sec
            state.global_step += 1
            callback.on_step_end(None, state, TrainerControl())

    run(120, 2.0)
    assert reports[-1]["sec_per_step"] == pytest.approx(2.0) and reports[-1]["step"] == 220
    assert len(reports) == 40  # one report every 5 s at the least: every third 2-second step, not every step
    clock[0] += 600.0  # paused
    run(90, 1.0)
    last = reports[-1]
    assert last["sec_per_step"] == pytest.approx(1.0) and last["eta"] == 1000 - last["step"] and last["step"] > 300
