"""Offline, quiet, isolated: every test runs without network and writes only under tmp dirs."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["WANDB_MODE"] = "offline"
os.environ["NO_ALBUMENTATIONS_UPDATE"] = "1"
os.environ.setdefault("WANDB_SILENT", "true")

import pytest  # noqa: E402

from medtransfer import settings  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """`@pytest.mark.slow` tests (subprocess sweeps) go first, so the 2 xdist workers share them instead of
    one worker finishing the longest one alone at the end (stable sort: the rest keep their order)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path_factory, monkeypatch):
    """Cache and runs go to a per-session tmp dir, never the user's home (the data root stays as configured)."""
    base = tmp_path_factory.getbasetemp()
    monkeypatch.setenv(settings.CACHE_DIR, str(base / "cache"))
    monkeypatch.setenv(settings.RUNS_ROOT, str(base / "runs"))
    monkeypatch.setenv("WANDB_DIR", str(base / "wandb"))
    # subprocess jobs' temp files too: Lightning stages each checkpoint in $TMPDIR (fsspec transaction), and
    # a job a test kills mid-save would leave it in /tmp for good; under basetemp it goes with the session
    (base / "tmp").mkdir(exist_ok=True)
    monkeypatch.setenv("TMPDIR", str(base / "tmp"))
    # wandb.init exports WANDB_SERVICE; a later test's subprocess jobs would attach to this process's service
    monkeypatch.delenv("WANDB_SERVICE", raising=False)


@pytest.fixture(scope="session")
def shared_data():
    """The real dataset copies (../shared/data via .env); tests that need them skip cleanly when absent."""
    root = settings.data_root(required=False)
    if root is None or not root.is_dir():
        pytest.skip(f"real data not available ({settings.DATA_ROOT} unset or missing)")
    return root


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    """A per-test weights cache; any socket use is a test failure (every file is built locally, in its
    source's published layout). Used by the pretrain tests as `pytestmark = usefixtures("offline_cache")`."""
    import socket

    monkeypatch.setenv(settings.CACHE_DIR, str(tmp_path / "cache"))

    def refuse(*a, **k):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
