from medtransfer.runs import condition_slug
from medtransfer.train.resolvers import auto_workers


def test_slug_is_deterministic_and_names_each_axis():
    cond = {"encoder": "r50", "decoder": "unet", "pretrain": "imagenet", "finetune": "full", "dataset": "kvasir_seg",
            "n_train": None, "fold": None}
    assert condition_slug(cond) == "enc-r50_dec-unet_pre-imagenet_ft-full_ds-kvasir_seg_n-all"
    assert condition_slug({**cond, "n_train": 15, "fold": 2}).endswith("_n-15_fold-2")
    assert condition_slug({**cond, "encoder": "a/b c"}).startswith("enc-a-b-c_")


def test_auto_workers_leaves_a_core_for_training():
    import os

    cores = len(os.sched_getaffinity(0))
    n = auto_workers()
    assert 0 <= n <= max(0, cores - 1)


def test_condition_extra_keeps_science_overrides_only():
    from medtransfer.train.resolvers import condition_extra

    overrides = ["encoder=r50", "optimizer.lr=0.01", "seed=1", "trainer=smoke", "image_size=224", "study=s",
                 "logger.wandb.project=p", "dataset.n_train=5", "+augment.p_hflip=0.2", "num_workers=0"]
    assert condition_extra(overrides) == "augment.p_hflip=0.2;image_size=224;optimizer.lr=0.01"
    assert condition_extra(["encoder=r18", "seed=0"]) is None
    assert condition_extra([]) is None


def test_slug_with_extra_is_hydra_safe():
    cond = {"encoder": "r50", "decoder": "unet", "pretrain": "imagenet", "finetune": "full", "dataset": "kvasir_seg",
            "n_train": None, "fold": None, "extra": "image_size=224;optimizer.lr=0.01"}
    slug = condition_slug(cond)
    assert slug.endswith("_x-image_size-224-optimizer.lr-0.01") and "=" not in slug and "," not in slug
    assert condition_slug({**cond, "extra": "optimizer.lr=0.001"}) != condition_slug(cond)


def test_long_slug_is_capped_and_stays_unique():
    cond = {"encoder": "r50", "decoder": "unet", "pretrain": "file", "finetune": "full", "dataset": "kvasir_seg",
            "n_train": None, "fold": None, "extra": "pretrain.path=/very/long/" + "d/" * 150 + "best.ckpt"}
    a = condition_slug(cond)
    b = condition_slug({**cond, "extra": cond["extra"].replace("best", "last")})
    assert len(a) == 160 and len(b) == 160 and a != b and a.startswith("enc-r50_dec-unet_pre-file")


# ------------------------------------------------------------------------------- run identity (defect 6)
def _compose(overrides):
    from hydra import compose, initialize_config_dir

    from medtransfer import settings

    with initialize_config_dir(config_dir=str(settings.PROJECT_ROOT / "conf"), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def _folder(root, n=3):
    import numpy as np
    from PIL import Image

    for d in ("images", "masks"):
        (root / d).mkdir(parents=True)
    for i in range(n):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "images" / f"{i}.png")
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "masks" / f"{i}.png")
    return root


def test_folder_roots_are_different_runs(tmp_path):
    a, b = _folder(tmp_path / "a"), _folder(tmp_path / "b")
    run_a = _compose(["dataset=folder", f"dataset.root={a}"]).run_dir
    run_b = _compose(["dataset=folder", f"dataset.root={b}"]).run_dir
    assert run_a != run_b
    assert run_a == _compose(["dataset=folder", f"dataset.root={a}/../a"]).run_dir  # the same folder
    (a / "images" / "3.png").write_bytes((a / "images" / "0.png").read_bytes())  # a changed file list
    (a / "masks" / "3.png").write_bytes((a / "masks" / "0.png").read_bytes())
    assert _compose(["dataset=folder", f"dataset.root={a}"]).run_dir != run_a


def test_split_file_contents_are_part_of_the_run(tmp_path):
    a = _folder(tmp_path / "a")
    split = tmp_path / "split.json"
    split.write_text('{"v": 1}')
    cfg = _compose(["dataset=folder", f"dataset.root={a}", f"dataset.split={split}"])
    first = cfg.run_dir, cfg.condition.extra  # resolved now: a resolver reads the disk when asked
    split.write_text('{"v": 2}')  # same path, other ids
    cfg = _compose(["dataset=folder", f"dataset.root={a}", f"dataset.split={split}"])
    assert first[0] != cfg.run_dir
    assert first[1] != cfg.condition.extra  # results.json and report rows tell them apart too


def test_registered_dataset_slug_is_unchanged(tmp_path, monkeypatch):
    from medtransfer import settings

    monkeypatch.setenv(settings.DATA_ROOT, str(tmp_path))
    for d in ("images", "masks"):
        (tmp_path / "kvasir_seg" / d).mkdir(parents=True)
    want = "enc-r50_dec-deeplabv3plus_pre-scratch_ft-full_ds-kvasir_seg_n-all"
    for extra in ([], [f"dataset.root={tmp_path / 'kvasir_seg'}"]):  # the registered location, named or not
        cfg = _compose(["dataset=kvasir_seg", *extra])
        assert cfg.condition.extra is None and condition_slug(cfg.condition) == want, extra
    moved = _compose(["dataset=kvasir_seg", f"dataset.root={_folder(tmp_path / 'copy')}"])
    assert condition_slug(moved.condition).startswith(want + "_x-data-")  # elsewhere: other data
    assert condition_slug(_compose(["dataset=synthetic"]).condition).endswith("_ds-synthetic_n-all")


def test_the_report_reads_the_slug_back():
    """runs.parse_slug inverts runs.condition_slug (the report's fallback for run dirs without a record),
    `extra` included; '=' in values comes back as '-' (the slug has none)."""
    from medtransfer.runs import parse_slug

    cond = {"encoder": "r50", "decoder": None, "pretrain": "moco-v3", "finetune": "full", "dataset": "kvasir_seg",
            "n_train": 15, "fold": None, "extra": "optimizer.lr=0.01"}
    assert parse_slug(condition_slug(cond)) == {"encoder": "r50", "pretrain": "moco-v3", "finetune": "full",
                                                "dataset": "kvasir_seg", "n_train": "15",
                                                "extra": "optimizer.lr-0.01"}
    assert parse_slug(condition_slug({**cond, "n_train": None}))["n_train"] is None
