"""Run options the papers' protocols need (select=last / best_on_test, test_also) and the one-line errors a
command line gets for bad input."""

import json
from pathlib import Path

import pytest

from medtransfer import settings
from tests.test_train_run import _cfg, _cli


def test_select_last_trains_without_a_validation_part(tmp_path, monkeypatch):
    """Paper 000's way: 80% train / 20% test, no validation, the final epoch tested."""
    from medtransfer.errors import ConfigError
    from medtransfer.train.run import run

    monkeypatch.setenv(settings.RUNS_ROOT, str(tmp_path / "runs"))
    base = ["experiment=smoke", "logger=csv", "eval_surface=false", "dataset.split=random_80_20",
            "dataset.val_fraction=0", "trainer.max_epochs=2", "trainer.limit_test_batches=1"]
    with pytest.raises(ConfigError, match=r"no validation part to select the best epoch on; set select=last"):
        run(_cfg(base))
    record = run(_cfg([*base, "select=last"]))
    assert record["status"] == "complete" and record["selection"] == "last"
    assert record["split"]["n_val"] == 0 and record["metrics"]["val_history"] == [] and record["best_epoch"] is None
    assert record["epochs"] == 2 and Path(record["checkpoints"]["best"]).is_file()
    with pytest.raises(ConfigError, match=r"no validation part: schedule=medtransfer\.train\.schedules\.plateau"):
        run(_cfg([*base, "select=last", "schedule=plateau", "study=plateau"]))
    # paper 001's protocol: the best epoch chosen on the test images (optimistic, and labelled so)
    optimistic = run(_cfg([*base, "select=best_on_test", "study=optimistic"]))
    assert optimistic["selection"] == "best_on_test" and optimistic["split"]["n_val"] == 0
    assert len(optimistic["metrics"]["val_history"]) == 2 and optimistic["best_epoch"] in (0, 1)


def test_test_also_scores_extra_test_sets_at_the_end_of_the_job(tmp_path, monkeypatch):
    """Paper 002: in- and out-of-distribution results from one command, written as eval.py writes them."""
    from medtransfer.train.run import run

    monkeypatch.setenv(settings.RUNS_ROOT, str(tmp_path / "runs"))
    cfg = _cfg(["experiment=smoke", "logger=none", "eval_surface=false", "trainer.max_epochs=1",
                "+dataset@test_also.other=synthetic", "test_also.other.data_seed=7", "test_also.other.n_images=20"])
    record = run(cfg)
    also = record["test_also"]["other"]
    summary = json.loads((Path(cfg.run_dir) / "eval" / "synthetic-random_80_10_10" / "summary.json").read_text())
    assert also["metrics"] == summary["metrics"] and also["dataset"] == "synthetic"
    assert summary["ckpt"] == str(Path(record["checkpoints"]["best"]).resolve())
    assert also["metrics"]["n_images"] == 2 and 0 <= also["metrics"]["dice_per_image"] <= 1  # 10% of 20
    assert record["metrics"]["test"]["n_images"] != also["metrics"]["n_images"]  # another set than the ID test


def test_bad_inputs_at_the_command_line_are_one_line_errors(tmp_path):
    """A truncated checkpoint given to eval.py, an unwritable runs root, a non-integer batch size, an
    optimizer keyword typo: one `error:` line each, no traceback, before any compute."""
    ckpt = tmp_path / "broken.ckpt"
    ckpt.write_bytes(b"PK\x03\x04 truncated")
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    cases = [("eval.py", [f"ckpt={ckpt}"], r"ckpt=.*broken\.ckpt: unreadable .*truncated or not a checkpoint"),
             ("train.py", ["dataset=synthetic", f"paths.runs_root={blocker / 'runs'}"],
              r"not_a_folder is not a writable folder"),
             ("train.py", ["dataset=synthetic", "batch_size=abc"], r"batch_size='abc': expected an integer"),
             ("train.py", ["dataset=synthetic", "+optimizer.lrr=0.1"], r"unexpected keyword argument 'lrr'")]
    import re

    for script, args, pattern in cases:
        p = _cli(script, args, tmp_path, check=False)
        assert p.returncode == 2, (args, p.stderr[-2000:])
        assert "Traceback" not in p.stderr, (args, p.stderr[-2000:])
        errors = [line for line in p.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and re.search(pattern, errors[0]), (args, p.stderr[-2000:])
