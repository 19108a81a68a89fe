"""splits: determinism, disjointness, published counts, group integrity, nested n_train, JSON round-trip."""

from pathlib import Path

import pytest

from medtransfer.data.datasets import DATASETS, Sample
from medtransfer.data.splits import (
    GENERIC_SPLITS,
    GroupSplit,
    ListSplit,
    Split,
    load_split,
    make_split,
    natural_key,
)
from medtransfer.errors import ConfigError, DataError

P = Path("/nonexistent")


def fake(n, groups=None):
    return [Sample(str(i), P, P, group=None if groups is None else str(i // groups)) for i in range(n)]


def parts(s):
    return s.train, s.val, s.test


def test_random_split_deterministic_and_disjoint():
    samples = fake(100)
    for name in ("random_80_20", "random_80_10_10"):
        a = make_split("x", name, GENERIC_SPLITS[name], samples, P, seed=0)
        b = make_split("x", name, GENERIC_SPLITS[name], list(reversed(samples)), P, seed=0)  # order-free
        c = make_split("x", name, GENERIC_SPLITS[name], samples, P, seed=1)
        assert parts(a) == parts(b) and a.sha256 == b.sha256
        assert parts(a) != parts(c) and a.sha256 != c.sha256
        tr, va, te = map(set, parts(a))
        assert not (tr & va or tr & te or va & te) and tr | va | te == {s.id for s in samples}
    a = make_split("x", "random_80_10_10", GENERIC_SPLITS["random_80_10_10"], samples, P, seed=0)
    assert (a.n_train, a.n_val, a.n_test) == (80, 10, 10)
    b = make_split("x", "random_80_20", GENERIC_SPLITS["random_80_20"], samples, P, seed=0, val_fraction=0.1)
    assert (b.n_train, b.n_val, b.n_test) == (72, 8, 20) and b.source["val_carved_from_train"]


def test_all_split_is_all_test():
    s = make_split("x", "all", GENERIC_SPLITS["all"], fake(7), P, seed=0)
    assert (s.n_train, s.n_val, s.n_test) == (0, 0, 7)


def test_n_train_subsample_deterministic_nested_subset():
    samples, scheme = fake(200), GENERIC_SPLITS["random_80_10_10"]
    full = make_split("x", "r", scheme, samples, P, seed=3)
    s50 = make_split("x", "r", scheme, samples, P, seed=3, n_train=50)
    s20 = make_split("x", "r", scheme, samples, P, seed=3, n_train=20)
    assert s50.train == make_split("x", "r", scheme, samples, P, seed=3, n_train=50).train
    assert len(s50.train) == 50 and set(s50.train) <= set(full.train)
    assert set(s20.train) <= set(s50.train)  # nested: a low-data curve changes one thing
    assert (s50.val, s50.test) == (full.val, full.test)  # n_train never moves val/test
    assert s50.train != make_split("x", "r", scheme, samples, P, seed=4, n_train=50).train
    with pytest.raises(ConfigError, match="n_train=999 exceeds the 160"):
        make_split("x", "r", scheme, samples, P, seed=3, n_train=999)


def test_group_split_keeps_groups_whole():
    samples = fake(300, groups=10)  # 30 groups of 10
    s = make_split("x", "g", GroupSplit(), samples, P, seed=0)
    group_of = {x.id: x.group for x in samples}
    seen = [{group_of[i] for i in p} for p in parts(s)]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    assert s.n_val > 0 and s.n_test > 0 and abs(s.n_train - 240) <= 20


def test_group_split_small_dataset_fills_every_part():
    for seed in range(5):
        s = make_split("x", "g", GroupSplit(), fake(12, groups=3), P, seed=seed)  # 4 groups of 3
        assert s.n_train >= 3 and s.n_val == 3 and s.n_test == 3


def test_list_split_unknown_id_is_data_error(tmp_path):
    (tmp_path / "tr.txt").write_text("0\n1\nzzz\n")
    (tmp_path / "te.txt").write_text("2\n")
    with pytest.raises(DataError, match="tr.txt: 1 listed id"):
        make_split("x", "l", ListSplit("tr.txt", "te.txt"), fake(3), tmp_path, seed=0)


def test_natural_sort():
    assert sorted(["10", "2", "1", "a10", "a2"], key=natural_key) == ["1", "2", "10", "a2", "a10"]


def test_split_json_round_trip(tmp_path):
    s = make_split("x", "random_80_20", GENERIC_SPLITS["random_80_20"], fake(30), P, seed=5, n_train=10)
    path = s.save(tmp_path / "run" / "split.json")
    assert [p.name for p in path.parent.iterdir()] == ["split.json"]  # no temp file left behind
    back = load_split(path)
    assert back == s and back.sha256 == s.sha256
    d = s.to_dict()
    assert d["counts"] == {"train": 10, "val": 2, "test": 6} and d["seed"] == 5
    d["train"] = d["train"][1:]
    with pytest.raises(DataError, match="sha256 does not match"):
        Split.from_dict(d)


def _list(name, root):
    return DATASETS[name].list_samples(root / name, {})


def test_medico2020_counts_on_real_data(shared_data):
    spec = DATASETS["kvasir_seg"]
    samples = _list("kvasir_seg", shared_data)
    s = make_split(
        "kvasir_seg",
        "medico2020",
        spec.splits["medico2020"],
        samples,
        shared_data / "kvasir_seg",
        seed=0,
        val_fraction=0.1,
    )
    assert (s.n_train, s.n_val, s.n_test) == (792, 88, 120)
    assert set(s.source["files"]) == {"splits/train.txt", "splits/val.txt"}
    p = make_split("kvasir_seg", "pranet", spec.splits["pranet"], samples, shared_data / "kvasir_seg", seed=0)
    assert (p.n_train + p.n_val, p.n_test) == (900, 100)


def test_clinicdb_sequence_split_on_real_data(shared_data):
    spec = DATASETS["cvc_clinicdb"]
    samples = _list("cvc_clinicdb", shared_data)
    assert len(samples) == 612 and {s.image.suffix for s in samples} == {".tif", ".png"}
    s = make_split(
        "cvc_clinicdb", "sequence", spec.splits["sequence"], samples, shared_data / "cvc_clinicdb", seed=0
    )
    seq = {x.id: x.group for x in samples}
    groups = [{seq[i] for i in p} for p in parts(s)]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert sum(map(len, groups)) == 29 and s.n_train + s.n_val + s.n_test == 612
    assert 0.7 < s.n_train / 612 < 0.9 and s.n_val > 0 and s.n_test > 0
    assert "sequences.csv" in s.source["files"]


def test_kfold_partitions_train_val_like_nnunet():
    from medtransfer.data.splits import kfold

    folds = kfold([str(i) for i in range(10)], 3, seed=12345)
    assert [len(f["val"]) for f in folds] == [4, 3, 3]  # sklearn KFold sizes: first n % k one larger
    vals = [set(f["val"]) for f in folds]
    assert set().union(*vals) == {str(i) for i in range(10)} and sum(map(len, vals)) == 10
    for f in folds:
        assert set(f["train"]) | set(f["val"]) == {str(i) for i in range(10)} and not set(f["train"]) & set(f["val"])
    assert kfold([str(i) for i in reversed(range(10))], 3, seed=12345) == folds  # order-free
    assert kfold([str(i) for i in range(10)], 3, seed=1) != folds


def test_fold_split_keeps_test_and_is_independent_of_run_seed():
    samples = fake(50)
    scheme = GENERIC_SPLITS["random_80_20"]
    base = make_split("x", "random_80_20", scheme, samples, P, seed=0)
    f1 = make_split("x", "random_80_20", scheme, samples, P, seed=0, fold=1, folds=5)
    assert f1.test == base.test and set(f1.train) | set(f1.val) == set(base.train) | set(base.val)
    assert f1.n_val == 8 and f1.source["fold"] == 1 and len(f1.source["all_folds"]) == 5
    assert f1.source["all_folds"][1]["val"] == f1.val
    other_fold = make_split("x", "random_80_20", scheme, samples, P, seed=0, fold=2, folds=5)
    assert not set(other_fold.val) & set(f1.val)
    with pytest.raises(ConfigError, match=r"dataset.fold=5: expected 0..4"):
        make_split("x", "random_80_20", scheme, samples, P, seed=0, fold=5, folds=5)


# ---------------------------------------------------------------------------- k-fold by group (defect 3)
def uneven(n_groups=13):
    """Groups of 3..9 items, ids interleaved so a by-item fold would cut through them."""
    return [Sample(f"{g}_{k}", P, P, group=f"seq{g}") for g in range(n_groups) for k in range(3 + g % 7)]


def test_grouped_kfold_keeps_groups_whole():
    from medtransfer.data.splits import kfold

    samples = uneven()
    group_of = {s.id: s.group for s in samples}
    folds = kfold(list(group_of), 4, seed=12345, groups=group_of)
    assert len(folds) == 4
    for f in folds:
        assert not {group_of[i] for i in f["train"]} & {group_of[i] for i in f["val"]}
        assert sorted(f["train"] + f["val"]) == sorted(group_of)
    vals = [i for f in folds for i in f["val"]]
    assert sorted(vals) == sorted(group_of)  # every item in exactly one val fold
    sizes = [len(f["val"]) for f in folds]
    assert max(sizes) - min(sizes) <= 9  # balanced by items to within one group
    assert kfold(list(reversed(list(group_of))), 4, seed=12345, groups=group_of) == folds  # same seed
    same_sized = {f"{g}_{k}": f"s{g}" for g in range(12) for k in range(4)}
    a, b = (kfold(list(same_sized), 3, seed=s, groups=same_sized) for s in (0, 1))
    assert a != b  # the seed matters
    with pytest.raises(ConfigError, match=r"dataset.folds=14: expected 2..13 .*13 groups"):
        kfold(list(group_of), 14, seed=0, groups=group_of)


def test_fold_split_by_group_is_recorded():
    samples = uneven()
    group_of = {s.id: s.group for s in samples}
    scheme = GENERIC_SPLITS["random_80_20"]  # a by-item scheme: the folds are still drawn by group
    s = make_split("x", "random_80_20", scheme, samples, P, seed=0, fold=1, folds=3, fold_groups=True)
    assert not {group_of[i] for i in s.train} & {group_of[i] for i in s.val}
    assert s.source["folds_by"] == "group" and s.source["all_folds"][1]["val"] == s.val
    ungrouped = make_split("x", "random_80_20", scheme, fake(50), P, seed=0, fold=1, folds=5)
    assert "folds_by" not in ungrouped.source  # existing split.json of by-item folds are unchanged
    with pytest.raises(DataError, match="no sequence/group known"):
        make_split("x", "random_80_20", scheme, fake(20), P, seed=0, fold=0, folds=3, fold_groups=True)


def test_clinicdb_folds_never_share_a_sequence(shared_data, tmp_path):
    from medtransfer.data import SegDataModule

    seq = {x.id: x.group for x in _list("cvc_clinicdb", shared_data)}
    for k in range(5):
        dm = SegDataModule({"name": "cvc_clinicdb", "fold": k}, 32, "none", 2, 0, 0,
                           (0.5,) * 3, (0.5,) * 3)
        s = dm.split
        leaked = [i for i in s.val if seq[i] in {seq[j] for j in s.train}]
        assert s.n_val > 0 and not leaked, f"fold {k}: {len(leaked)} of {s.n_val} val frames share a sequence"
        assert not {seq[i] for i in s.test} & ({seq[i] for i in s.train} | {seq[i] for i in s.val})
    path = dm.save_split(tmp_path / "split.json")
    assert load_split(path).source["folds_by"] == "group"
