"""Every config composes and validates; pipeline options follow the slug rule; bad values are refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from atomic_comp.config import CONF_DIR, ConfigError, RunConfig, compose_config, to_typed, validate_run
from atomic_comp.pipeline import pipeline_name, resolve, slug
from tests.conftest import composed

ROOT = Path(__file__).resolve().parents[1]


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize("group", ["world", "recipe", "model", "stage", "pipeline", "eval", "deepspeed", "logger",
                                   "experiment", "sweep", "hydra/launcher"])
def test_every_option_composes_and_validates(group):
    options = _options(group)
    assert options
    for option in options:
        cfg = composed(f"{group}={option}")
        validate_run(cfg, check_deepspeed=False)


def test_pipeline_options_are_slugs_of_their_names():
    names = set()
    for option in _options("pipeline"):
        cfg = composed(f"pipeline={option}")
        for pipe in resolve(cfg):
            assert pipe.name == pipeline_name(pipe.stages)
            names.add(pipe.name)
        if not cfg.pipeline.members:
            assert option == slug(cfg.pipeline.name)
    assert slug("SFT(Mem+Ctx)->RL(Mem+Ctx)->RL(Comp)") == "sft_mem_ctx__rl_mem_ctx__rl_comp"
    assert {"SFT(Mem+Ctx)", "SFT(Comp)", "SFT(Mem+Ctx+Comp)", "SFT(Mem)", "SFT(Ctx)", "SFT(Mem+Ctx)->RL(Comp)",
            "SFT(Comp)->RL(Comp)", "SFT(Mem)->RL(Comp)", "SFT(Ctx)->RL(Comp)", "SFT(Mem+Ctx)->RL(Mem+Ctx)",
            "SFT(Mem+Ctx)->RL(Mem+Ctx)->RL(Comp)", "SFT(Mem+Ctx)->SFT(Comp)", "SFT(Mem+Ctx)->LoRA(Comp)"} <= names


@pytest.mark.parametrize("override, key", [
    ("stage.rl.num_generations=1", "stage.rl.num_generations"),
    ("stage.rl.loss_type=ppo", "stage.rl.loss_type"),
    ("stage.rl.max_completion_length=0", "stage.rl.max_completion_length"),
    ("eval.max_new_tokens=0", "eval.max_new_tokens"),
    ("eval.levels=[iid,ood]", "eval.levels"),
    ("eval.recall_items=-1", "eval.recall_items"),
    ("recipe.copy_drills=-5", "recipe.copy_drills"),
    ("recipe.lookup_drills=-1", "recipe.lookup_drills"),
    ("recipe.context.nonce_relations=1.5", "recipe.context.nonce_relations"),
    ("recipe.context.nonce_relations=0.5", "recipe.context.nonce_relations"),  # needs noun_sentences
    ("recipe.context.fresh_objects=-0.1", "recipe.context.fresh_objects"),
    ("recipe.context.fresh_comp_objects=1.5", "recipe.context.fresh_comp_objects"),
    ("recipe.context.scattered_facts=-0.5", "recipe.context.scattered_facts"),
    ("recipe.context.fresh_heads=2", "recipe.context.fresh_heads"),
    ("recipe.context.fresh_people=-1", "recipe.context.fresh_people"),
    ("recipe.context.question_repeats=0", "recipe.context.question_repeats"),
    ("recipe.context.one_hop=1.2", "recipe.context.one_hop"),
    ("recipe.context.mem_stated=1.5", "recipe.context.mem_stated"),
    ("recipe.context.read_parametric=-0.5", "recipe.context.read_parametric"),
    ("model.num_heads=3", "model.num_heads"),
    ("model.revision=main", "model.revision"),  # the tiny model is built, not fetched
    (["model=qwen2.5-0.5b", f"model.pretrained={CONF_DIR}", "model.revision=main"], "model.revision"),  # a local folder
    ("stage.sft.freeze=[attention]", "stage.sft.freeze"),
    ("stage.rl.freeze=[mlp,layers]", "stage.rl.freeze"),
    ("pipeline.members=[nope]", "pipeline.members"),
    ("data_seed=-1", "data_seed"),
    ("+pipeline.stages=[{kind: sft, tasks: [mem]}]", "pipeline"),
])
def test_bad_run_values_name_key_value_and_allowed(override, key):
    cfg = composed(*(override if isinstance(override, list) else [override]))
    with pytest.raises(ConfigError) as err:
        validate_run(cfg)
    assert err.value.key.startswith(key)
    assert err.value.allowed


def test_stage_overrides_are_typed():
    cfg = composed("pipeline=sft_comp", "+pipeline.stages.0.overrides={max_stepz: 3}")
    with pytest.raises(ConfigError, match="overrides"):
        validate_run(cfg)


def test_freezing_a_lora_stage_is_refused_with_the_stage_named():
    """peft trains adapters and freezes every base weight: a freeze list there would silently mean nothing."""
    cfg = composed("pipeline=sft_mem_ctx__lora_comp", "stage.sft.freeze=[mlp]")
    with pytest.raises(ConfigError) as err:
        validate_run(cfg)
    assert err.value.key == "pipeline.stages[1].overrides.freeze" and err.value.value == ["mlp"]


def test_deepspeed_without_the_extra_is_refused_before_any_work(tmp_path):
    pytest.importorskip("hydra")
    try:
        import deepspeed  # noqa: F401

        pytest.skip("deepspeed is installed here")
    except ImportError:
        pass
    out = tmp_path / "run"
    res = subprocess.run([sys.executable, "launch.py", "deepspeed=zero2", f"hydra.run.dir={out}"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "deepspeed" in res.stderr and "pip install -e '.[gpu]'" in res.stderr
    assert not out.exists()
    res = subprocess.run([sys.executable, "launch.py", "deepspeed=zero4", f"hydra.run.dir={out}"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and "zero2" in res.stderr and "zero3" in res.stderr  # the options on offer
    assert not out.exists()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_default_world_holds_the_default_recipe_on_every_seed_the_readme_runs(seed, tmp_path):
    """`python launch.py -m seed=1,2,3` must not stop at "the world is too small for this recipe"."""
    from atomic_comp.recipe import load_data

    cfg = composed(f"seed={seed}")
    data = load_data(cfg.world, cfg.recipe, cfg.seed, str(tmp_path))
    for task in ("mem", "ctx", "comp"):
        assert data.splits["train_sft"]["task"].count(task) == getattr(cfg.recipe.sft_pool, task)


def test_reference_config_is_current_and_is_the_composed_default():
    from omegaconf import OmegaConf

    from atomic_comp import reference

    text = reference.generate()
    assert reference.REFERENCE.read_text() == text, "stale: run `python -m atomic_comp.reference` and commit it"
    assert to_typed(OmegaConf.create(text), RunConfig) == composed()
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("  n_parametric:"))
    assert lines[at - 1] == "  # people whose biographies are trained into the weights"
    at = lines.index("  injection: stage")  # a comment of several lines, its inner indentation kept
    assert lines[at - 3:at] == ["  #   first_sft: mixed into each pipeline's first SFT stage",
                                "  #   stage: a knowledge-injection SFT stage on the biographies alone, before every pipeline",
                                "  #          (one cache entry, so a suite or sweep trains it once)"]


def test_reference_comments_belong_to_their_own_fields(tmp_path):
    from dataclasses import dataclass

    from atomic_comp import reference

    @dataclass
    class Probe:
        # first, over
        # two lines
        a: int = 1
        b: int = 2  # trailing comments are not a field's
        # c's own

        c: int = 3
        d: str = "x"

        def method(self):  # not a field
            # d: not this one
            return self.d

    assert reference.field_comments(Probe) == {"a": ["first, over", "two lines"]}
    stale = tmp_path / "ref.yaml"
    stale.write_text("seed: 2\n")
    assert reference.main(["--check", "--out", str(stale)]) == 1
    assert reference.main(["--out", str(stale)]) == 0
    assert reference.main(["--check", "--out", str(stale)]) == 0


def _output_dirs(overrides: list[str]) -> tuple[str, str]:
    """The run dir and sweep subdir Hydra would make for these overrides (as launch.py composes them)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    cfg = compose_config(overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return OmegaConf.select(cfg, "hydra.run.dir"), OmegaConf.select(cfg, "hydra.sweep.subdir")


def test_output_dirs_fit_a_path_component_however_many_overrides():
    """Section 27's recipe as overrides made an override_dirname over 255 bytes: mkdir failed after the work."""
    recipe = ["experiment=gpu_long", "recipe.context.fresh_objects=0.75", "recipe.context.fresh_comp_objects=1.0",
              "recipe.context.question_repeats=3", "recipe.sft_pool.mem=4000", "recipe.sft_pool.ctx=12000",
              "recipe.context.scattered_facts=0.5", "stage.rl.max_steps=500", "eval.forced_hops=true",
              "eval.paragraphless_hops=true", "pipeline.members=[sft_mem_ctx,sft_comp,sft_mem_ctx__rl_comp]"]
    run1, sub1 = _output_dirs(recipe + ["seed=1"])
    run2, sub2 = _output_dirs(recipe + ["seed=2"])
    for d in (run1.split("/")[-1], sub1, run2.split("/")[-1], sub2):
        assert 0 < len(d.encode()) <= 200, d
    assert "question_repeats=3" in sub1 and "recipe.context." not in sub1  # readable: keys without their groups
    assert sub1 != sub2 and run1 != run2  # the seed is past the cut; the hash keeps the dirs apart
    assert (run1, sub1) == _output_dirs(recipe + ["seed=1"])  # a rerun finds its own dir
    run, sub = _output_dirs(["seed=3", "stage.rl.max_steps=5"])
    assert run.endswith("/seed=3,stage.rl.max_steps=5") and sub == "seed=3,stage.rl.max_steps=5"  # short: Hydra's names


def test_the_candidate_preset_keys_its_stages_as_its_overrides_do():
    # cpu_reader_6k names the tuning log's candidate overrides; runs made either way must share the cache
    from atomic_comp.plan import dry_run
    keys = lambda overrides: [stages for *_, stages in dry_run(overrides + ["pipeline=headline", "seed=2"])["matrix"]]
    preset = keys(["experiment=cpu_reader_6k"])
    assert preset == keys(["experiment=cpu_reader", "recipe.context.scattered_facts=0.25",
                           "stage.read.max_steps=6000", "stage.rl.max_steps=600", "stage.rl.save_steps=200"])
    assert preset != keys(["experiment=cpu_reader", "recipe.context.scattered_facts=0.25",
                           "stage.rl.max_steps=600", "stage.rl.save_steps=200"])  # the 3,000-step reader
    longer_rl = keys(["experiment=cpu_reader_6k_rl1200"])
    assert longer_rl == keys(["experiment=cpu_reader_6k", "stage.rl.max_steps=1200"])
    # only the RL stages differ from cpu_reader_6k: its reader, injection and SFT stages are reused
    kind = lambda matrix, rl: {s for stages in matrix for s in stages if s[0].startswith("RL(") == rl}
    assert kind(longer_rl, False) == kind(preset, False)
    assert kind(longer_rl, True) and kind(longer_rl, True).isdisjoint(kind(preset, True))
