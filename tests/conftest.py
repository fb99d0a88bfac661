from __future__ import annotations

import os

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from atomic_comp.config import RecipeConfig, TaskCounts, WorldConfig  # noqa: E402


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
