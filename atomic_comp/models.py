"""Models and tokenizers: a tiny Llama trained from scratch on the world's own words, or a Hugging Face checkpoint.

The tiny tokenizer is word-level (`tokenizers` WordLevel over Metaspace +
punctuation pieces), or byte-pair pieces over the same words (`model.bpe_vocab`),
wrapped as a PreTrainedTokenizerFast, so TRL and
`generate` treat it like any other. Metaspace keeps spaces in the tokens, so
decoding gives back the exact text (emails, dates and phone numbers included).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SPECIALS = {"pad_token": "<pad>", "eos_token": "<eos>", "unk_token": "<unk>"}


def build_tokenizer(texts: Iterable[str], bpe_vocab: int = 0) -> PreTrainedTokenizerFast:
    """A word-level tokenizer whose vocabulary is every word of `texts`, so none of them has an unknown token;
    or, with `bpe_vocab`, byte-pair pieces learnt on `texts` (at most that many, every character of `texts`
    among them), so a rare word is spelt from the pieces of common ones."""
    if bpe_vocab:
        tok = Tokenizer(models.BPE(unk_token=SPECIALS["unk_token"]))
        trainer = trainers.BpeTrainer(vocab_size=bpe_vocab, special_tokens=list(SPECIALS.values()),
                                      min_frequency=1, show_progress=False)
    else:
        tok = Tokenizer(models.WordLevel(unk_token=SPECIALS["unk_token"]))
        trainer = trainers.WordLevelTrainer(special_tokens=list(SPECIALS.values()), min_frequency=1)
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\n"), behavior="isolated"),
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never"),
        pre_tokenizers.Punctuation(behavior="isolated"),
    ])
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="never")
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIALS, padding_side="left",
                                   model_max_length=4096, clean_up_tokenization_spaces=False)


def build_tiny_model(cfg, tokenizer: PreTrainedTokenizerFast, seed: int) -> LlamaForCausalLM:
    """A small Llama-family decoder with rotary positions, initialised from `seed`."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        rope_theta=cfg.rope_theta,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def load_tokenizer(path: str | Path):
    tok = AutoTokenizer.from_pretrained(str(path))
    tok.padding_side = "left"  # batched generation appends to the right
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(path: str | Path, dtype: str = "float32"):
    """A causal LM from safetensors (never a pickle)."""
    return AutoModelForCausalLM.from_pretrained(str(path), dtype=getattr(torch, dtype), use_safetensors=True)


def save_checkpoint(model, tokenizer, path: Path) -> None:
    """safetensors weights + tokenizer, loadable by from_pretrained. LoRA adapters are merged first."""
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    # the caller decides who saves: under data parallel, transformers would skip non-zero ranks
    model.save_pretrained(str(path), safe_serialization=True, is_main_process=True)
    tokenizer.save_pretrained(str(path))
