"""`.env` → settings: paths resolved against the file, and tool settings (W&B, SLURM) exported to the process."""

import os

import pytest

from medtransfer import settings


@pytest.fixture
def dotenv_dir(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("MEDTRANSFER_RUNS_ROOT=rel/runs\nWANDB_MODE=offline\nSLURM_PARTITION=gpu\n"
                                   "SLURM_ACCOUNT=\nWANDB_PROJECT=from_dotenv\n")
    monkeypatch.chdir(tmp_path)
    for k in ("WANDB_MODE", "SLURM_PARTITION", "SLURM_ACCOUNT", "WANDB_PROJECT", settings.RUNS_ROOT):
        monkeypatch.delenv(k, raising=False)
    settings._dotenv.cache_clear()
    yield tmp_path
    settings._dotenv.cache_clear()


def test_tool_settings_exported_environment_wins(dotenv_dir, monkeypatch):
    monkeypatch.setenv("WANDB_PROJECT", "from_env")
    exported = settings.export_tool_env()
    assert os.environ["WANDB_MODE"] == "offline"  # a plain `python train.py` logs offline, as .env says
    assert os.environ["SLURM_PARTITION"] == "gpu"  # what ${oc.env:SLURM_PARTITION} in launcher/ reads
    assert os.environ["WANDB_PROJECT"] == "from_env"  # a real variable is never overwritten
    assert "SLURM_ACCOUNT" not in os.environ  # empty in .env: stays unset (the launcher's null default)
    assert settings.RUNS_ROOT not in exported and settings.RUNS_ROOT not in os.environ  # paths stay in settings
    assert set(exported) == {"WANDB_MODE", "SLURM_PARTITION"}


def test_relative_path_resolved_against_dotenv_folder(dotenv_dir, monkeypatch):
    assert settings.runs_root() == (dotenv_dir / "rel" / "runs").resolve()
    monkeypatch.setenv(settings.RUNS_ROOT, "/abs/runs")
    assert settings.runs_root() == settings.Path("/abs/runs")
