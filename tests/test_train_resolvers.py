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
