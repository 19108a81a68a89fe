from medtransfer.train.resolvers import auto_workers, condition_slug


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
