"""Typed config schema and the one validation pass, run at the door before any work.

Hydra composes YAML from conf/; `load(cfg)` merges it onto these dataclasses
(so a wrong type or an unknown key fails with its full key) and `validate`
checks the values. Both raise ConfigError naming the key, the value and what is allowed.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    def __init__(self, key: str, value: Any, allowed: str):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"invalid config: {key}={value!r}; allowed: {allowed}")


# One path component holds 255 bytes, and Hydra's override_dirname (conf/config.yaml's run dir and sweep
# subdir) grows with every override: a recipe's worth of them made mkdir fail after the pipelines had run.
DIRNAME_MAX = 200


def short_dirname(name: str) -> str:
    """Hydra's override_dirname if it fits; else keys without their dotted groups, cut to DIRNAME_MAX with a
    hash of the whole name at the end, so a rerun of the same overrides finds its dir and no two lists share one."""
    if len(name.encode()) <= DIRNAME_MAX:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    short = re.sub(r"(^|,)(?:[\w-]+\.)+(?=[\w-]+=)", r"\1", name)  # recipe.context.scattered_facts= -> scattered_facts=
    return short.encode()[:DIRNAME_MAX - len(digest) - 1].decode(errors="ignore") + "~" + digest


if not OmegaConf.has_resolver("short_dirname"):
    OmegaConf.register_new_resolver("short_dirname", short_dirname)


# --------------------------------------------------------------------------- world
@dataclass
class LevelsConfig:
    # share of each relation group that is iid / composition / held out (zero-shot); sums to 1
    iid: float = 0.2
    composition: float = 0.7
    held_out: float = 0.1
    # share of composition-level paths that are train-only (the rest are test-only)
    composition_train_share: float = 0.5
    # pin relations to a level, e.g. {hobby: held_out}; the rest are split at random
    pinned: dict[str, str] = field(default_factory=dict)


@dataclass
class WorldConfig:
    # a label for logs and reports
    name: str = "tiny"
    # people whose biographies are trained into the weights
    n_parametric: int = 200
    # people given only in prompts: half reuse parametric names (where memory and context meet), half are new
    n_contextual: int = 200
    # Faker locale for names, cities and companies
    locale: str = "en_US"
    levels: LevelsConfig = field(default_factory=LevelsConfig)


# --------------------------------------------------------------------------- recipe
@dataclass
class HopsConfig:
    # path lengths drawn for every task, with these weights (paper: 2..5 at 0.5/0.3/0.15/0.05)
    min: int = 2
    max: int = 5
    weights: list[float] = field(default_factory=lambda: [0.5, 0.3, 0.15, 0.05])

    def values(self) -> list[int]:
        return list(range(self.min, self.max + 1))


@dataclass
class ContextConfig:
    # other people's paragraphs in each prompt; they state the path's relations about someone else
    distractor_people: int = 2
    # sentences kept per paragraph (the needed fact always stays); null keeps whole biographies
    facts_per_paragraph: Optional[int] = None
    # Mem items carry irrelevant context, so no skill can be keyed on whether context is present
    mem_context: bool = True
    # false: training contexts leave out held-out relations' facts, which are never an answer there (so a
    # model learns to skip them) but are the answer of a zero-shot hop; test contexts keep them
    held_out_filler: bool = True
    # share of training Ctx items whose path relations get made-up nouns ("X's bralo is Y") in question,
    # context and chain: the lookup must then match the question's word, as a held-out relation's hop must
    # (a stand-in for what pretraining gives; needs recipe.noun_sentences; docs/tuning.md section 13)
    nonce_relations: float = 0.0
    # share of training Ctx items whose hop objects are swapped, throughout prompt and chain, for other
    # objects of the same relation that the item does not mention: a fact memorised from other items' chains
    # then gives the wrong answer, so only reading the context is rewarded (docs/tuning.md sections 13, 25)
    fresh_objects: float = 0.0
    # the same swap for that share of training Comp items, on their trailing contextual hops (a parametric
    # hop's object stays memory's): Comp chains then cannot recall a contextual fact either (docs/tuning.md 23)
    fresh_comp_objects: float = 0.0
    # share of training Ctx items whose first person is renamed, throughout prompt and chain, to a made-up
    # person (a first and last name of the world's no person has), so the lookup cannot be learnt around the
    # few people training questions start from (docs/tuning.md 25)
    fresh_heads: float = 0.0
    # share of training Ctx items whose every person (first person, objects, distractors' people) is renamed
    # to a made-up person of the item's own: nothing can be recalled, no real person's fact is contradicted
    # (fresh objects teach that a real person's stated fact is never the answer) and no name stands out
    # (docs/tuning.md 25)
    fresh_people: float = 0.0
    # times a training Ctx or Comp question (first person and relation path) may be asked, each with its own
    # context and, under fresh objects, its own objects: more items than the world has questions, so a large
    # pool is read, not memorised item by item (docs/tuning.md 24)
    question_repeats: int = 1
    # share of training Ctx items asked about their first hop alone: the question stops at the first
    # relation and the context holds the first person's paragraph and the distractors, not the object's, so
    # the person a hop finds need not be one the context says more about, as in a Comp item whose next hop
    # is parametric (in every 2-hop Ctx item it is; docs/tuning.md 26)
    one_hop: float = 0.0
    # share of training Ctx items whose later hops' people get no paragraph: each such hop's fact is one sentence
    # inside another person's paragraph, and a distractor's object by the same relation gets one too. In a 2-hop
    # Ctx item the person the first hop finds otherwise always has a paragraph, and the lookup learns to pick a
    # paragraph's head; in a Comp item whose next hop is parametric that person has none (docs/tuning.md 27)
    scattered_facts: float = 0.0
    # share of training Mem items whose context also states each hop's (parametric) fact, beside the same
    # relation's fact about someone else: whether to read or recall is then decided by what the context
    # states, not by which group the relation word belongs to (docs/tuning.md section 14)
    mem_stated: float = 0.0
    # share of training Ctx items whose last hop asks a parametric attribute (occupation, hobby, ...) of a
    # person with no parametric facts, its value drawn per item and stated only in the context: a parametric
    # relation word is then read when the context states it, so read-or-recall is decided by the context,
    # not by the relation word (docs/tuning.md section 18)
    read_parametric: float = 0.0


# the ContextConfig fields that are a share of items, each validated as a proportion
CONTEXT_SHARES = ("nonce_relations", "mem_stated", "fresh_objects", "fresh_comp_objects", "fresh_heads", "fresh_people",
                  "one_hop", "scattered_facts", "read_parametric")


@dataclass
class TaskCounts:
    mem: int = 0
    ctx: int = 0
    comp: int = 0


@dataclass
class RecipeConfig:
    name: str = "default"
    hops: HopsConfig = field(default_factory=HopsConfig)
    context: ContextConfig = field(default_factory=ContextConfig)
    # training items per task in the SFT pool and in the disjoint RL pool
    sft_pool: TaskCounts = field(default_factory=lambda: TaskCounts(mem=1000, ctx=1000, comp=1000))
    rl_pool: TaskCounts = field(default_factory=lambda: TaskCounts(mem=250, ctx=250, comp=500))
    # test items per task and level
    test_per_level: int = 100
    # share of training items at the iid level; the rest are composition-level
    iid_share: float = 0.5
    # share of people whose questions are test-only (I.I.D. = seen paths, new entities)
    test_people: float = 0.2
    # how much of each pool a stage trains on: nested, path-stratified subsets (the sweep knobs)
    mem_proportion: float = 1.0
    ctx_proportion: float = 1.0
    comp_proportion: float = 1.0
    # mix the parametric biographies (plain LM text) into the first SFT stage
    biographies: bool = True
    # copies of each parametric fact in distinct wordings in that text (at most 3)
    bio_paraphrases: int = 1
    # copies of each paraphrase, each with its sentences in a fresh order: a fact is then recalled from its
    # subject and relation, not from the sentence before it (Allen-Zhu & Li's "permute" augmentation)
    bio_orders: int = 1
    # state every fact (biographies, context, chain steps) as "X's {noun} is Y.", the question's own word for
    # the relation: a model trained from scratch has no other way to tie a held-out relation's question
    # word to the sentences that state it (docs/tuning.md section 7)
    noun_sentences: bool = False
    # open each chain step with where its fact comes from ("The context says ..." / "I recall ..."), so a chain
    # decides to read or recall before it writes a relation word no training question used (docs/tuning.md 19)
    hop_markers: bool = False
    # rows of copy drills ("Repeat: w1 .. wk =" -> " w1 .. wk", also reversed) over every word of the world's
    # text, trained wherever the biographies are: a stand-in for the copying a pretrained LM brings, so a
    # chain can write a relation word no training question used. No facts, no questions (docs/tuning.md 9)
    copy_drills: int = 0
    # rows of lookup drills ("Facts: a's b is c. ... Look up: a's b is" -> " c.") over the same words, with
    # distractors that share a or b: the context lookup of a Ctx hop, for relation words no question used
    lookup_drills: int = 0
    # head every generated prompt with the paper's instruction line (released files keep their own); a model
    # trained from scratch learns nothing from it, so the tiny recipe drops it (36 of ~140 tokens per item)
    instruction: bool = True
    # train and test on the authors' released files in this folder instead of generated items
    released_dir: Optional[str] = None


@dataclass
class ReadingConfig:
    """A reading stage before the world (atomic_comp/reading.py): Ctx-format questions about a made-up world,
    what a pretrained checkpoint brings and a tiny model trained from scratch lacks (docs/tuning.md 29)."""

    # training items; 0: no reading stage (the default)
    items: int = 0
    # made-up relation nouns the training items ask about: too many to learn one lookup per noun
    relations: int = 1000
    # further made-up nouns that training items only state among their distractors (read, never asked, as a
    # held-out relation of the world) and half the test items ask: does it match words it was never asked?
    held_out: int = 100
    # first and last names (a person is a pair) and attribute values:
    #   made_up: made-up words, like the relation nouns
    #   world_like: Faker names and values of the world's kinds (its value pools, cities, companies, addresses),
    #               so the lookup is learnt on the kind of words the world's answers are; the nouns stay made-up
    people: str = "made_up"
    names: int = 300
    values: int = 500
    # hops per question, 1..max_hops uniformly
    max_hops: int = 2
    # facts in each item's context, the question's own included
    facts: int = 8
    # test items, half on trained nouns (level iid), half on held-out ones (level zero_shot)
    test_items: int = 200


# --------------------------------------------------------------------------- top level
def default_cache_dir() -> str:
    env = os.environ.get("ATOMIC_COMP_CACHE")
    if env:
        return env
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "atomic_comp")


@dataclass
class DataConfig:
    """The data app: `python -m atomic_comp.data` (conf/data.yaml)."""

    # seeds the world, the level split and every item
    seed: int = 1
    world: WorldConfig = field(default_factory=WorldConfig)
    recipe: RecipeConfig = field(default_factory=RecipeConfig)
    # root of the dataset and stage caches (a shared filesystem on a cluster)
    cache_dir: Optional[str] = None
    # when set, also write world.json and one JSONL per split here
    export_dir: Optional[str] = None


# --------------------------------------------------------------------------- model
@dataclass
class ModelConfig:
    # tiny: a Llama-family decoder trained from scratch; anything else is a Hugging Face name or local path
    name: str = "tiny"
    pretrained: Optional[str] = None
    # a Hub branch, tag or commit of `pretrained`: fetched as that snapshot and named in the cache keys, so a
    # pinned commit keys one set of weights (unpinned, a hub name stands for whatever it serves)
    revision: Optional[str] = None
    hidden_size: int = 128
    intermediate_size: int = 512
    num_layers: int = 4
    num_heads: int = 4
    max_position_embeddings: int = 1024
    rope_theta: float = 10000.0
    # float32 on CPU; bfloat16 for checkpoints on GPU
    dtype: str = "float32"
    # tiny only. 0: one token per word of the corpus. N: a byte-pair vocabulary of at most N pieces learnt on the
    # corpus, so a word no question asks about is spelt from pieces that questions do use
    bpe_vocab: int = 0


# --------------------------------------------------------------------------- stages
@dataclass
class LoRAConfig:
    # LoRA(...) stages train adapters through peft; merged into the checkpoint afterwards
    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj",
                                                                "gate_proj", "up_proj", "down_proj"])


@dataclass
class SFTConfig:
    lr: float = 1e-3
    # epochs over the stage's data, unless max_steps > 0
    epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 32
    grad_accum: int = 1
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    max_length: int = 1024
    # bf16 mixed precision (GPU only)
    bf16: bool = False
    # recompute activations in backward: saves GPU memory, costs ~30% time (TRL turns it on by default)
    gradient_checkpointing: bool = False
    # trainer checkpoints every this many steps, so a killed stage resumes
    save_steps: int = 200
    logging_steps: int = 10
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    # modules whose weights the stage leaves as its parent had them, by name: self_attn, mlp, embed_tokens,
    # q_proj, ... (FREEZABLE). [self_attn] trains facts into the MLPs while the attention's lookups stay put
    freeze: list[str] = field(default_factory=list)


@dataclass
class RLConfig:
    lr: float = 1e-4
    max_steps: int = 200
    # prompts per step; each gets num_generations samples (a GRPO group)
    prompts_per_step: int = 16
    num_generations: int = 8
    # KL coefficient against the reference (start-of-stage) model; 0 skips the reference model
    beta: float = 0.0
    temperature: float = 1.0
    # tokens a sample may take (null: the stage's longest gold chain in the model's tokenizer, plus a little;
    # a sample cut off before its answer earns nothing, and byte-pair pieces make chains ~1.7x longer)
    max_completion_length: Optional[int] = None
    loss_type: str = "dapo"
    # a small bonus for emitting the answer marker (off: the paper's reward is exact match only)
    format_reward: float = 0.0
    use_vllm: bool = False
    bf16: bool = False
    gradient_checkpointing: bool = False
    save_steps: int = 50
    logging_steps: int = 5
    warmup_ratio: float = 0.0
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    freeze: list[str] = field(default_factory=list)


@dataclass
class StagesConfig:
    """Hyperparameters per stage kind; a pipeline's stage may override any of them."""

    sft: SFTConfig = field(default_factory=SFTConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    # LoRA(...) stages are SFT stages with these adapter settings
    lora: LoRAConfig = field(default_factory=lambda: LoRAConfig(enabled=True))
    # how the parametric biographies (recipe.biographies) get into the weights:
    #   first_sft: mixed into each pipeline's first SFT stage
    #   stage: a knowledge-injection SFT stage on the biographies alone, before every pipeline
    #          (one cache entry, so a suite or sweep trains it once)
    injection: str = "first_sft"
    inject: SFTConfig = field(default_factory=lambda: SFTConfig(max_steps=300))
    # the reading stage's hyperparameters (it runs when reading.items > 0, before the injection)
    # (lr 3e-3, the tiny SFT's, stalls at a loss of 1.1 over 11,000 steps; at 1e-3, 10,000 steps answer 47% of
    # trained-noun questions, 3,000 steps 8%: docs/tuning.md section 29)
    read: SFTConfig = field(default_factory=lambda: SFTConfig(lr=1e-3, max_steps=10000, batch_size=32, max_length=512,
                                                              save_steps=500))
    # also mix the biographies into every later SFT stage: a model trained from scratch forgets the facts
    # no training question asks about (a held-out relation's), which the zero-shot level needs
    bio_replay: bool = False
    # reading items (reading.items > 0) mixed into the injection and every later SFT stage, a fresh sample of
    # the reading corpus per stage: without them the world's stages erase the reader (docs/tuning.md 30)
    read_replay: int = 0


@dataclass
class StageSpec:
    # sft | rl | lora
    kind: str = "sft"
    # which of mem, ctx, comp the stage trains on
    tasks: list[str] = field(default_factory=list)
    # which pool it draws from: sft | rl; null = sft for the first stage, rl after it
    pool: Optional[str] = None
    # overrides of this kind's hyperparameters for this stage only, e.g. {max_steps: 300}
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class PipelineConfig:
    # the paper's notation, e.g. SFT(Mem+Ctx)->RL(Comp); results and logs use it
    name: str = ""
    stages: list[StageSpec] = field(default_factory=list)
    # a suite: pipeline option names (conf/pipeline/<slug>.yaml) to run one after another
    members: list[str] = field(default_factory=list)


@dataclass
class EvalConfig:
    name: str = "all"
    # which levels and tasks to score after every stage
    levels: list[str] = field(default_factory=lambda: ["iid", "composition", "zero_shot"])
    tasks: list[str] = field(default_factory=lambda: ["mem", "ctx", "comp"])
    # items per task x level (null: all of the test split)
    max_items: Optional[int] = None
    batch_size: int = 64
    # greedy tokens per item (null: the items' longest gold chain in the model's tokenizer, plus a little)
    max_new_tokens: Optional[int] = None
    # pass@k: samples per question (0 = off) and the k grid (powers of two up to n)
    passk_n: int = 0
    passk_ks: list[int] = field(default_factory=list)
    # which tasks, and how many items per task x level, get sampled
    passk_tasks: list[str] = field(default_factory=lambda: ["comp"])
    passk_items: Optional[int] = None
    temperature: float = 1.0
    top_p: float = 1.0
    # parametric recall: cloze probes of biography facts per relation level (0 = off); it shows whether a
    # stage kept the facts no training question asks about, which the zero-shot level needs
    recall_items: int = 200
    # teacher-forced hops: the gold chain up to each hop's object, then greedy (off: it doubles eval time). It
    # separates finding a hop's object from writing the chain to it, and says whose fact a wrong object is
    forced_hops: bool = False
    # counterfactual hops: contextual hops forced with their fact changed in the context; says whether a trained
    # lookup reads the context or recalls the fact from training chains (the world's facts are fixed)
    counterfactual_hops: bool = False
    # paragraphless hops: contextual hops forced with and without the paragraph of the person they find; says
    # whether a lookup reads the hop's sentence or picks a paragraph's head (a Comp item's contextual hop
    # followed by a parametric one finds a person with no paragraph)
    paragraphless_hops: bool = False
    # unrivalled hops: contextual hops forced with and without the context's sentences of the same relation about
    # other people; says whether a lookup that reads the relation also matches the subject's name
    unrivalled_hops: bool = False


@dataclass
class LoggerConfig:
    # wandb | none
    name: str = "wandb"
    project: str = "atomic-comp"
    entity: Optional[str] = None
    tags: list[str] = field(default_factory=list)
    # online | offline | disabled; null: offline unless W&B credentials are configured
    mode: Optional[str] = None


@dataclass
class DeepSpeedConfig:
    # none | zero2 | zero3 (conf/deepspeed/): a shipped DeepSpeed JSON handed to the trainers
    name: Optional[str] = None
    config_file: Optional[str] = None


@dataclass
class RunConfig:
    """The main app: `python launch.py` (conf/config.yaml)."""

    # seeds the model, the reading corpus and training; also the data, unless data_seed is set
    seed: int = 1
    # seeds the world, its level split and every item, the test set included (null: `seed`). Each seed holds
    # out its own relations; fixing this while `seed` varies measures training noise on one test set
    data_seed: Optional[int] = None
    world: WorldConfig = field(default_factory=WorldConfig)
    recipe: RecipeConfig = field(default_factory=RecipeConfig)
    reading: ReadingConfig = field(default_factory=ReadingConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    stage: StagesConfig = field(default_factory=StagesConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    deepspeed: DeepSpeedConfig = field(default_factory=lambda: DeepSpeedConfig())
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    # the W&B group and the sweep folder name; sweeps/<name>.yaml sets it
    sweep_name: str = "adhoc"
    cache_dir: Optional[str] = None
    # where results.json goes (Hydra's run dir by default)
    output_dir: Optional[str] = None
    # train on cuda when available, else cpu
    device: str = "auto"
    # torch threads on CPU (0: torch's default)
    threads: int = 0
    # repeatable GPU training: transformers' full_determinism (deterministic kernels, CUBLAS workspace; slower).
    # CPU runs already repeat bit for bit; GPU runs otherwise fork (docs/tuning.md section 11)
    deterministic: bool = False


LEVEL_KEYS = ("iid", "composition", "held_out")


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(key, value, allowed)


def validate_world(w: WorldConfig, prefix: str = "world") -> None:
    from atomic_comp.families.biography.levels import RELATION_LEVELS
    from atomic_comp.families.biography.relations import BY_NAME

    _check(w.n_parametric >= 4, f"{prefix}.n_parametric", w.n_parametric, "an integer >= 4")
    _check(w.n_contextual >= 4, f"{prefix}.n_contextual", w.n_contextual, "an integer >= 4")
    _check(w.n_contextual // 2 <= w.n_parametric, f"{prefix}.n_contextual", w.n_contextual,
           f"at most 2 * world.n_parametric = {2 * w.n_parametric} (half of the contextual people reuse parametric names)")
    lv = w.levels
    for k in LEVEL_KEYS:
        v = getattr(lv, k)
        _check(0.0 <= v <= 1.0, f"{prefix}.levels.{k}", v, "a proportion in [0, 1]")
    total = lv.iid + lv.composition + lv.held_out
    _check(math.isclose(total, 1.0, abs_tol=1e-6), f"{prefix}.levels", {k: getattr(lv, k) for k in LEVEL_KEYS},
           f"iid + composition + held_out summing to 1 (got {total:g})")
    _check(0.0 < lv.composition_train_share < 1.0, f"{prefix}.levels.composition_train_share",
           lv.composition_train_share, "a proportion strictly between 0 and 1")
    for rel, level in lv.pinned.items():
        _check(rel in BY_NAME, f"{prefix}.levels.pinned.{rel}", rel, f"one of the 39 relations: {', '.join(sorted(BY_NAME))}")
        _check(level in RELATION_LEVELS, f"{prefix}.levels.pinned.{rel}", level, f"one of {', '.join(RELATION_LEVELS)}")


def validate_recipe(r: RecipeConfig, prefix: str = "recipe") -> None:
    h = r.hops
    _check(1 <= h.min <= 5, f"{prefix}.hops.min", h.min, "an integer in 1..5")
    _check(1 <= h.max <= 5, f"{prefix}.hops.max", h.max, "an integer in 1..5")
    _check(h.min <= h.max, f"{prefix}.hops.max", h.max, f"an integer >= recipe.hops.min ({h.min})")
    n = h.max - h.min + 1
    _check(len(h.weights) == n, f"{prefix}.hops.weights", list(h.weights),
           f"{n} weights, one per hop count {h.min}..{h.max}")
    for i, wt in enumerate(h.weights):
        _check(wt >= 0, f"{prefix}.hops.weights[{i}]", wt, "a weight >= 0")
    _check(sum(h.weights) > 0, f"{prefix}.hops.weights", list(h.weights), "weights with a positive sum")
    c = r.context
    _check(c.distractor_people >= 0, f"{prefix}.context.distractor_people", c.distractor_people, "an integer >= 0")
    _check(c.facts_per_paragraph is None or c.facts_per_paragraph >= 1, f"{prefix}.context.facts_per_paragraph",
           c.facts_per_paragraph, "null or an integer >= 1")
    for share in CONTEXT_SHARES:
        v = getattr(c, share)
        _check(0.0 <= v <= 1.0, f"{prefix}.context.{share}", v, "a proportion in [0, 1]")
    _check(c.nonce_relations == 0.0 or r.noun_sentences, f"{prefix}.context.nonce_relations", c.nonce_relations,
           f"0 unless {prefix}.noun_sentences is true (made-up nouns replace the noun of 'X's {{noun}} is Y.')")
    _check(c.question_repeats >= 1, f"{prefix}.context.question_repeats", c.question_repeats, "an integer >= 1")
    for pool in ("sft_pool", "rl_pool"):
        for task in ("mem", "ctx", "comp"):
            v = getattr(getattr(r, pool), task)
            _check(v >= 0, f"{prefix}.{pool}.{task}", v, "a count >= 0")
    _check(r.test_per_level >= 0, f"{prefix}.test_per_level", r.test_per_level, "a count >= 0")
    for key in ("iid_share", "mem_proportion", "ctx_proportion", "comp_proportion"):
        v = getattr(r, key)
        _check(0.0 <= v <= 1.0, f"{prefix}.{key}", v, "a proportion in [0, 1]")
    _check(0.0 < r.test_people < 1.0, f"{prefix}.test_people", r.test_people, "a proportion strictly between 0 and 1")
    _check(r.released_dir is None or Path(r.released_dir).is_dir(), f"{prefix}.released_dir", r.released_dir,
           "null or a folder with train_sft, train_rl and test .json/.jsonl files")
    _check(1 <= r.bio_paraphrases <= 3, f"{prefix}.bio_paraphrases", r.bio_paraphrases,
           "an integer in 1..3 (every relation has 3 sentence templates)")
    _check(r.bio_orders >= 1, f"{prefix}.bio_orders", r.bio_orders, "an integer >= 1")
    _check(r.copy_drills >= 0, f"{prefix}.copy_drills", r.copy_drills, "an integer >= 0")
    _check(r.lookup_drills >= 0, f"{prefix}.lookup_drills", r.lookup_drills, "an integer >= 0")


def validate_reading(r: ReadingConfig, prefix: str = "reading") -> None:
    for key in ("items", "held_out", "test_items"):
        _check(getattr(r, key) >= 0, f"{prefix}.{key}", getattr(r, key), "an integer >= 0")
    _check(r.people in READING_PEOPLE, f"{prefix}.people", r.people, f"one of {', '.join(READING_PEOPLE)}")
    _check(r.names >= 2, f"{prefix}.names", r.names, "an integer >= 2")
    _check(r.values >= 1, f"{prefix}.values", r.values, "an integer >= 1")
    _check(1 <= r.max_hops <= 5, f"{prefix}.max_hops", r.max_hops, "an integer in 1..5")
    _check(r.facts >= 3 * r.max_hops, f"{prefix}.facts", r.facts,
           f"an integer >= 3 * {prefix}.max_hops (each hop's fact and two distractors: its subject's, its word's)")
    _check(r.relations >= r.facts, f"{prefix}.relations", r.relations,
           f"an integer >= {prefix}.facts ({r.facts}): enough nouns for one person's distractor facts")
    _check(r.test_items == 0 or r.held_out >= r.max_hops, f"{prefix}.held_out", r.held_out,
           f"at least {prefix}.max_hops when there are test items (half of them ask held-out nouns only)")


def validate_data(cfg: DataConfig) -> None:
    validate_world(cfg.world)
    validate_recipe(cfg.recipe)


def register_schemas() -> None:
    """Make the dataclasses the schema Hydra composes onto (type-checked overrides, defaults in one place)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="data_schema", node=DataConfig)
    cs.store(name="run_schema", node=RunConfig)


register_schemas()


CONF_DIR = Path(__file__).resolve().parents[1] / "conf"  # the Hydra config tree launch.py composes


def compose_config(overrides=(), config_name: str = "config", return_hydra_config: bool = False) -> DictConfig:
    """What launch.py composes from these overrides, outside a Hydra app (plan, reference, benches, tests)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose(config_name, overrides=list(overrides), return_hydra_config=return_hydra_config)


def composed(overrides=(), schema: type | None = None, config_name: str = "config") -> Any:
    """compose_config merged onto its schema (RunConfig unless given); validation is left to the caller."""
    return to_typed(compose_config(overrides, config_name), schema or RunConfig)


def to_typed(cfg: DictConfig | dict, schema: type) -> Any:
    """Merge a composed config onto its dataclass schema and return the typed object."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), cfg)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or "?"
        raise ConfigError(str(key), getattr(e, "value", None) if hasattr(e, "value") else "?",
                          f"a value of the schema's type ({type(e).__name__}: {str(e).splitlines()[0]})") from None


TASKS = ("mem", "ctx", "comp")
EVAL_LEVELS = ("iid", "composition", "zero_shot")
INJECTIONS = ("first_sft", "stage")
READING_PEOPLE = ("made_up", "world_like")
RL_LOSSES = ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo")
# module names of Llama-family decoders (the tiny model, Qwen2.5); the tied lm_head is embed_tokens' matrix
FREEZABLE = ("embed_tokens", "self_attn", "q_proj", "k_proj", "v_proj", "o_proj", "mlp", "gate_proj", "up_proj",
             "down_proj", "input_layernorm", "post_attention_layernorm", "norm", "lm_head")


def _validate_stage_hyper(h, prefix: str) -> None:
    _check(h.lr > 0, f"{prefix}.lr", h.lr, "a learning rate > 0")
    _check(0.0 <= h.warmup_ratio < 1.0, f"{prefix}.warmup_ratio", h.warmup_ratio, "a ratio in [0, 1)")
    _check(h.save_steps >= 1, f"{prefix}.save_steps", h.save_steps, "an integer >= 1")
    if isinstance(h, SFTConfig):
        _check(h.batch_size >= 1, f"{prefix}.batch_size", h.batch_size, "an integer >= 1")
        _check(h.grad_accum >= 1, f"{prefix}.grad_accum", h.grad_accum, "an integer >= 1")
        _check(h.max_steps > 0 or h.epochs > 0, f"{prefix}.epochs", h.epochs, "> 0 when max_steps <= 0")
        _check(h.max_length >= 16, f"{prefix}.max_length", h.max_length, "an integer >= 16")
    else:
        _check(h.max_steps >= 1, f"{prefix}.max_steps", h.max_steps, "an integer >= 1")
        _check(h.num_generations >= 2, f"{prefix}.num_generations", h.num_generations,
               "an integer >= 2 (GRPO compares samples within a group)")
        _check(h.prompts_per_step >= 1, f"{prefix}.prompts_per_step", h.prompts_per_step, "an integer >= 1")
        _check(h.beta >= 0, f"{prefix}.beta", h.beta, "a KL coefficient >= 0")
        _check(h.temperature > 0, f"{prefix}.temperature", h.temperature, "a temperature > 0")
        _check(h.max_completion_length is None or h.max_completion_length >= 1, f"{prefix}.max_completion_length",
               h.max_completion_length, "an integer >= 1, or null (sized to the gold chains)")
        _check(h.loss_type in RL_LOSSES, f"{prefix}.loss_type", h.loss_type, f"one of {', '.join(RL_LOSSES)}")
        _check(h.format_reward >= 0, f"{prefix}.format_reward", h.format_reward, "a weight >= 0 (0 = off)")
    lora = h.lora
    _check(lora.r >= 1, f"{prefix}.lora.r", lora.r, "an integer >= 1")
    for name in h.freeze:
        _check(name in FREEZABLE, f"{prefix}.freeze", name, f"module names among {', '.join(FREEZABLE)}")
    _check(not (lora.enabled and h.freeze), f"{prefix}.freeze", list(h.freeze),
           "empty when the stage trains LoRA adapters (peft freezes every base weight already)")


MIN_BPE_VOCAB = 256  # room for the corpus's characters, each a piece of its own, and some merges


def world_seed(cfg: RunConfig) -> int:
    """The seed of a run's data: `data_seed`, or the run's `seed` when that is unset."""
    return cfg.seed if cfg.data_seed is None else cfg.data_seed


def validate_run(cfg: RunConfig, check_deepspeed: bool = True) -> None:
    """Everything a run needs checked before it builds, trains or submits anything."""
    _check(cfg.data_seed is None or cfg.data_seed >= 0, "data_seed", cfg.data_seed,
           "null (the run's seed) or an integer >= 0")
    validate_world(cfg.world)
    validate_recipe(cfg.recipe)
    m = cfg.model
    _check(m.name == "tiny" or bool(m.pretrained), "model.pretrained", m.pretrained,
           "a Hugging Face name or local path when model.name is not 'tiny'")
    if m.revision:
        _check(m.name != "tiny", "model.revision", m.revision, "null for the tiny model (it is built, not fetched)")
        _check(not Path(m.pretrained).is_dir(), "model.revision", m.revision,
               f"null for a local folder ({m.pretrained}: its files are keyed by their bytes)")
    _check(m.bpe_vocab == 0 or (m.name == "tiny" and m.bpe_vocab >= MIN_BPE_VOCAB), "model.bpe_vocab", m.bpe_vocab,
           f"0 (one token per word), or at least {MIN_BPE_VOCAB} pieces for the tiny model (a checkpoint brings its"
           " own tokenizer)")
    _check(m.hidden_size % m.num_heads == 0, "model.num_heads", m.num_heads,
           f"a divisor of model.hidden_size ({m.hidden_size})")
    _check(m.dtype in ("float32", "bfloat16", "float16"), "model.dtype", m.dtype, "one of float32, bfloat16, float16")
    _check(cfg.device in ("auto", "cpu", "cuda"), "device", cfg.device, "one of auto, cpu, cuda")
    _check(cfg.logger.name in ("wandb", "none"), "logger.name", cfg.logger.name, "wandb or none")
    _check(cfg.logger.mode in (None, "online", "offline", "disabled"), "logger.mode", cfg.logger.mode,
           "null, online, offline or disabled")
    _validate_stage_hyper(cfg.stage.sft, "stage.sft")
    _validate_stage_hyper(cfg.stage.rl, "stage.rl")
    _check(cfg.stage.injection in INJECTIONS, "stage.injection", cfg.stage.injection, f"one of {', '.join(INJECTIONS)}")
    if cfg.stage.injection == "stage":
        _validate_stage_hyper(cfg.stage.inject, "stage.inject")
    validate_reading(cfg.reading)
    _check(0 <= cfg.stage.read_replay <= cfg.reading.items, "stage.read_replay", cfg.stage.read_replay,
           f"an integer in 0..reading.items ({cfg.reading.items}): replayed items come from the reading corpus")
    if cfg.reading.items:
        _validate_stage_hyper(cfg.stage.read, "stage.read")
    ds = cfg.deepspeed
    if ds.name:
        _check(bool(ds.config_file) and (CONF_DIR / "deepspeed" / str(ds.config_file)).is_file(),
               "deepspeed.config_file", ds.config_file, f"a JSON file in {CONF_DIR / 'deepspeed'}")
        if check_deepspeed:
            import importlib.util

            _check(importlib.util.find_spec("deepspeed") is not None, "deepspeed", ds.name,
                   "none, unless DeepSpeed is installed: pip install -e '.[gpu]'")
    e = cfg.eval
    for lv in e.levels:
        _check(lv in EVAL_LEVELS, "eval.levels", lv, f"a subset of {', '.join(EVAL_LEVELS)}")
    for t in e.tasks:
        _check(t in TASKS, "eval.tasks", t, f"a subset of {', '.join(TASKS)}")
    _check(e.max_items is None or e.max_items >= 1, "eval.max_items", e.max_items, "null or an integer >= 1")
    _check(e.batch_size >= 1, "eval.batch_size", e.batch_size, "an integer >= 1")
    _check(e.max_new_tokens is None or e.max_new_tokens >= 1, "eval.max_new_tokens", e.max_new_tokens,
           "an integer >= 1, or null (sized to the gold chains)")
    _check(e.passk_n >= 0, "eval.passk_n", e.passk_n, "an integer >= 0 (0 = no pass@k)")
    _check(e.recall_items >= 0, "eval.recall_items", e.recall_items, "an integer >= 0 (0 = no recall probes)")
    for t in e.passk_tasks:
        _check(t in TASKS, "eval.passk_tasks", t, f"a subset of {', '.join(TASKS)}")
    for k in e.passk_ks:
        _check(1 <= k <= e.passk_n, "eval.passk_ks", k, f"k in 1..eval.passk_n ({e.passk_n}): pass@k needs n >= k samples")
    _validate_pipeline(cfg)


def _validate_pipeline(cfg: RunConfig) -> None:
    from atomic_comp import pipeline as pl

    p = cfg.pipeline
    _check(bool(p.members) != bool(p.stages), "pipeline", p.name,
           "a pipeline with stages, or a suite with members (conf/pipeline/)")
    for member in p.members:
        _check((CONF_DIR / "pipeline" / f"{member}.yaml").is_file(), "pipeline.members", member,
               f"a pipeline option in {CONF_DIR / 'pipeline'}")
    for i, pipe in enumerate(pl.resolve(cfg)):
        prefix = "pipeline" if not p.members else f"pipeline.members[{i}]"
        _check(bool(pipe.stages), f"{prefix}.stages", pipe.stages, "at least one stage")
        for j, spec in enumerate(pipe.stages):
            key = f"{prefix}.stages[{j}]"
            _check(spec.kind in ("sft", "rl", "lora"), f"{key}.kind", spec.kind, "one of sft, rl, lora")
            _check(bool(spec.tasks) and all(t in TASKS for t in spec.tasks), f"{key}.tasks", list(spec.tasks),
                   f"a non-empty subset of {', '.join(TASKS)}")
            _check(spec.pool in (None, "sft", "rl"), f"{key}.pool", spec.pool, "null, sft or rl")
            try:
                hyper, _, _ = pl.stage_config(cfg, spec, j == 0)
            except OmegaConfBaseException as e:
                raise ConfigError(f"{key}.overrides", dict(spec.overrides),
                                  f"keys and types of stage.{'rl' if spec.kind == 'rl' else 'sft'} ({str(e).splitlines()[0]})") from None
            _validate_stage_hyper(hyper, f"{key}.overrides")
        _check(pipe.name == pl.pipeline_name(pipe.stages), f"{prefix}.name", pipe.name,
               f"the paper notation of its stages: {pl.pipeline_name(pipe.stages)}")
