from __future__ import annotations

import os

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from atomic_comp.config import RecipeConfig, TaskCounts, WorldConfig  # noqa: E402

QWEN_EOS = "<|endoftext|>"  # Qwen2.5 base: its end of text, and its padding


def save_tiny_qwen(path, texts, seed: int = 0) -> None:
    """A Qwen2-architecture checkpoint of a few thousand weights with a byte-level BPE tokenizer, saved as
    from_pretrained reads it: what `model.pretrained=/local/path` gets on a cluster, in miniature (the Hub
    cannot be reached here)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=600, special_tokens=[QWEN_EOS],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=QWEN_EOS, pad_token=QWEN_EOS)
    config = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
                         tie_word_embeddings=True, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    Qwen2ForCausalLM(config).save_pretrained(str(path), safe_serialization=True)
    tok.save_pretrained(str(path))


def wandb_offline_run(job_dir) -> tuple[dict, dict]:
    """(run record, summary) of the offline W&B run a job wrote, read back with wandb's own reader."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    run_file = next(Path(job_dir).glob("wandb/offline-run-*/run-*.wandb"))
    out = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(run_file)],
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0:  # the CLI entry point, where `python -m wandb` is not wired
        out = subprocess.run([str(Path(sys.executable).parent / "wandb"), "leet", "inspect", "--json",
                              str(run_file)], capture_output=True, text=True, timeout=120)
    records = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    summary: dict = {}
    for r in records:
        if r["type"] == "summary":
            summary.update(r["summary"].get("update", {}))
    return next(r["run"] for r in records if r["type"] == "run"), summary


def composed(*overrides: str):
    """The typed RunConfig launch.py composes from these overrides (validation is left to the caller)."""
    from atomic_comp.config import composed as composed_run

    return composed_run(overrides)


def tiny_recipe(**kw) -> RecipeConfig:
    """The tiny recipe of conf/recipe/tiny.yaml, smaller pools so tests stay fast."""
    r = RecipeConfig(sft_pool=TaskCounts(mem=400, ctx=400, comp=400), rl_pool=TaskCounts(mem=100, ctx=100, comp=200),
                     test_per_level=40)
    r.hops.min, r.hops.max, r.hops.weights = 2, 3, [0.6, 0.4]
    r.context.facts_per_paragraph = 4
    for k, v in kw.items():
        setattr(r, k, v)
    return r


@pytest.fixture(scope="session")
def tiny_world_cfg() -> WorldConfig:
    return WorldConfig(n_parametric=200, n_contextual=200)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory, tiny_world_cfg):
    from atomic_comp.recipe import load_data

    return load_data(tiny_world_cfg, tiny_recipe(), seed=1, cache_dir=str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def tiny_family(tiny_world_cfg):
    from atomic_comp.families.biography import BiographyFamily

    return BiographyFamily(tiny_world_cfg, tiny_recipe(), seed=1)
