"""The tiny model's tokenizer: one token per word, or byte-pair pieces (`model.bpe_vocab`)."""

from __future__ import annotations

import pytest

from atomic_comp.config import ConfigError, RunConfig, validate_run
from atomic_comp.models import build_tokenizer
from atomic_comp.prompts import format_completion, format_prompt


def _texts(tiny_data) -> list[str]:
    return [format_prompt(it) + format_completion(it) for it in tiny_data.splits["train_sft"].select(range(300))]


def test_byte_pair_pieces_spell_a_word_the_corpus_never_had_and_decode_every_text_exactly(tiny_data):
    texts = _texts(tiny_data)
    words, pieces = build_tokenizer(texts), build_tokenizer(texts, bpe_vocab=300)
    assert len(pieces) <= 300 < len(words)
    for tok in (words, pieces):
        assert all(tok.decode(tok(t)["input_ids"]) == t for t in texts[:50])  # emails, dates, spaces and all
    unseen = " Their zorblaxian is Quillon Vantrey."
    assert words.unk_token_id in words(unseen)["input_ids"]
    ids = pieces(unseen)["input_ids"]
    assert pieces.unk_token_id not in ids and pieces.decode(ids) == unseen
    assert len(pieces.tokenize(" zorblaxian")) > 1  # spelt from pieces
    # pieces are shared: a text costs more tokens than one per word, but every piece comes from the corpus
    assert sum(len(pieces(t)["input_ids"]) for t in texts) > sum(len(words(t)["input_ids"]) for t in texts)


@pytest.mark.parametrize("overrides,value", [({"bpe_vocab": 100}, 100),
                                             ({"name": "qwen", "pretrained": "Qwen/Qwen2.5-0.5B", "bpe_vocab": 1000},
                                              1000)])
def test_a_bad_bpe_vocab_names_key_value_and_what_is_allowed(overrides, value):
    cfg = RunConfig()
    for k, v in overrides.items():
        setattr(cfg.model, k, v)
    with pytest.raises(ConfigError) as e:
        validate_run(cfg, check_deepspeed=False)
    assert "model.bpe_vocab" in str(e.value) and str(value) in str(e.value) and "at least 256" in str(e.value)


def test_the_base_model_has_the_configured_tokenizer_and_its_own_key(tiny_data, tmp_path):
    from atomic_comp import pipeline as pl
    from atomic_comp.models import load_model, load_tokenizer

    cfg = RunConfig()
    plain = pl.base_model(cfg, tiny_data, tmp_path)
    cfg.model.bpe_vocab = 400
    path, key, built = pl.base_model(cfg, tiny_data, tmp_path)
    assert built and key != plain[1]
    tok, model = load_tokenizer(path), load_model(path)
    assert len(tok) <= 400 and model.config.vocab_size == len(tok) < len(load_tokenizer(plain[0]))
