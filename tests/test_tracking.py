"""W&B identity and failure handling (the offline run itself is read back in tests/test_slurm.py)."""

from __future__ import annotations

import dataclasses

from atomic_comp.config import RunConfig
from atomic_comp.tracking import Tracker, redact, run_config, run_id


def test_run_id_follows_the_config_and_seed_not_the_machine():
    a, b = RunConfig(), RunConfig()
    b.cache_dir, b.output_dir, b.threads = "/elsewhere", "/other/out", 2
    assert run_id(a) == run_id(b)
    assert run_id(dataclasses.replace(a, seed=2)) != run_id(a)
    flat = run_config(a)
    assert flat["recipe.comp_proportion"] == 1.0 and flat["seed"] == 1 and "pipeline.name" in flat
    assert "cache_dir" not in flat


def test_secrets_are_redacted():
    flat = redact({"logger.api_key": "abc", "x.token": "t", "recipe.comp_proportion": 0.5})
    assert flat == {"logger.api_key": "<redacted>", "x.token": "<redacted>", "recipe.comp_proportion": 0.5}


def test_a_wandb_failure_does_not_fail_the_job(tmp_path, monkeypatch):
    # online, against a closed port on this machine: wandb.init fails
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_INIT_TIMEOUT", "10")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    cfg = RunConfig()
    cfg.logger.mode = "online"
    tracker = Tracker(cfg, tmp_path)
    assert tracker.run is None  # W&B could not start: logged, not raised
    tracker.pipeline("SFT(Comp)", {"stages": [], "eval": {}})
    tracker.finish(None)
