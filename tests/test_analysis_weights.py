"""Filter change (hand-worked), feature reuse, and layer activations through forward hooks."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from medtransfer.analysis.activations import layer_activations, list_layers
from medtransfer.analysis.weights import feature_reuse, filter_change, layer_filter_change


def test_filter_change_hand_worked():
    w0 = torch.tensor([[3.0, 4.0], [0.0, 5.0]])  # filter norms 5 and 5; tensor norm √50
    w = torch.tensor([[3.0, 4.0], [3.0, 9.0]])  # Δ = [[0, 0], [3, 4]]: ||Δ|| = 5
    res = filter_change({"conv.weight": w, "bn.running_mean": torch.ones(2)},
                        {"conv.weight": w0, "bn.running_mean": torch.zeros(2)})
    assert set(res) == {"conv.weight"}  # 1-d BN statistics are not filters
    r = res["conv.weight"]
    assert r["rel_change"] == pytest.approx(5 / math.sqrt(50))
    assert r["mean_filter_change"] == pytest.approx((0 / 5 + 5 / 5) / 2)
    assert filter_change({"w": w0}, {"w": w0})["w"]["rel_change"] == 0.0


def test_layer_pooling_and_prefixes():
    init = {"enc.a.weight": np.ones((2, 2)), "enc.b.weight": np.ones((1, 4)) * 2, "dec.weight": np.ones((2, 2))}
    final = {"enc.a.weight": np.ones((2, 2)) * 2, "enc.b.weight": np.ones((1, 4)) * 2, "dec.weight": np.zeros((2, 2))}
    per = filter_change(final, init)
    # enc: ||Δ||² = 4 (a) + 0 (b); ||W0||² = 4 + 16 → √4/√20
    assert layer_filter_change(per, ["enc", "dec"]) == pytest.approx({"enc": 2 / math.sqrt(20), "dec": 1.0})
    assert set(filter_change(final, init, prefixes=["enc.a"])) == {"enc.a.weight"}
    per["enc.ab.weight"] = {"norm_init": 1.0, "norm_diff": 100.0}  # "enc.ab" is not inside module "enc.a"
    assert layer_filter_change(per, ["enc.a"])["enc.a"] == pytest.approx(1.0)


def test_filter_change_rejects_mismatched_architectures():
    with pytest.raises(ValueError, match="shape"):
        filter_change({"w": np.ones((2, 2))}, {"w": np.ones((3, 2))})
    with pytest.raises(ValueError, match="not in the init"):
        filter_change({"w": np.ones((2, 2))}, {"v": np.ones((2, 2))})


def test_feature_reuse_is_transfer_minus_scratch():
    res = feature_reuse({"enc1": [0.8, 0.6], "dec1": [0.9, float("nan")]}, {"enc1": [0.5, 0.3], "dec1": [0.2]})
    assert res["enc1"]["reuse"] == pytest.approx(0.7 - 0.4)
    assert res["dec1"]["reuse"] == pytest.approx(0.7) and res["dec1"]["n_transfer"] == 1


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.blocks = nn.Sequential(nn.ReLU(), nn.Conv2d(4, 2, 1))
        self.pair = nn.Identity()

    def forward(self, x):
        y = self.blocks(self.stem(x))
        self.pair((y, y))  # a module whose output is a tuple
        return y


def test_layer_activations_by_module_name():
    torch.manual_seed(0)
    model = Tiny().train()
    images = torch.randn(5, 3, 8, 8)
    acts = layer_activations(model, images, ["stem", "blocks.1"], batch_size=2)
    assert acts["stem"].shape == (5, 4, 8, 8) and acts["blocks.1"].shape == (5, 2, 8, 8)
    with torch.no_grad():
        assert torch.allclose(acts["blocks.1"], model.blocks(model.stem(images)), atol=1e-6)
    assert model.training  # mode restored
    assert not model.stem._forward_hooks  # hooks removed
    assert "blocks.1" in list_layers(model)


def test_layer_activations_errors_name_the_problem():
    model = Tiny()
    with pytest.raises(ValueError, match="unknown layer"):
        layer_activations(model, torch.randn(1, 3, 8, 8), ["nope"])
    with pytest.raises(ValueError, match="tuple"):
        layer_activations(model, torch.randn(1, 3, 8, 8), ["pair"])
    assert not model.pair._forward_hooks
