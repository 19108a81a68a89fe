"""Fine-tuning strategies (segmentation models and classifiers): after one optimisation step exactly the
intended parameters changed; frozen norm layers stay in eval mode through Lightning's model.train() (BN
statistics do not move); random_frozen keeps the random init bit-identical; last_n stages cover every
backbone parameter of every encoder."""

import pytest
import timm
import torch
from omegaconf import OmegaConf

from medtransfer import settings
from medtransfer.errors import ConfigError
from medtransfer.pretrain import apply_finetune
from medtransfer.pretrain.finetune import check_finetune, stage_of

CONF = settings.PROJECT_ROOT / "conf"


def _ft(name, **over):
    cfg = OmegaConf.load(CONF / f"finetune/{name}.yaml")
    cfg.update(over)
    return cfg


@pytest.fixture(scope="module")
def fresh():
    from medtransfer.models import build_model

    torch.manual_seed(0)
    enc = OmegaConf.load(CONF / "encoder/r18.yaml")
    dec = OmegaConf.load(CONF / "decoder/fcn.yaml")
    dec.kwargs.channels = 32  # small head: the strategies do not depend on its width
    proto = build_model(enc, dec, num_classes=1, image_size=64)
    with torch.no_grad():  # timm zero-inits each block's last BN gamma: no gradient would reach the branch
        for m in proto.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
    state = {k: v.clone() for k, v in proto.state_dict().items()}

    def make():
        m = build_model(enc, dec, num_classes=1, image_size=64)
        m.load_state_dict(state)
        return m

    return make


def _step(model):
    """One SGD step in train mode (as Lightning runs it), on random data; returns the parameters before."""
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    x, y = torch.randn(2, 3, 64, 64), (torch.rand(2, 1, 64, 64) > 0.5).float()
    torch.nn.functional.binary_cross_entropy_with_logits(model(x), y).backward()
    opt.step()
    return before


def _changed(model, before):
    return {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}


def _bn_stats(module):
    return {k: v.clone() for k, v in module.state_dict().items() if "running_" in k}


@pytest.mark.parametrize("strategy,over,expect", [
    ("full", {}, lambda n: True),
    ("discriminative", {}, lambda n: True),
    ("frozen", {}, lambda n: not n.startswith("encoder.")),
    ("random_frozen", {}, lambda n: not n.startswith("encoder.")),
    ("last_n", {"n": 1}, lambda n: not n.startswith("encoder.") or n.startswith("encoder.backbone.layer4.")),
    ("last_n", {"n": 2}, lambda n: not n.startswith("encoder.") or n.startswith(("encoder.backbone.layer4.",
                                                                                 "encoder.backbone.layer3."))),
    ("linear", {}, lambda n: n.startswith("head.0.")),
])
def test_one_step_changes_exactly_the_intended_parameters(fresh, strategy, over, expect):
    model = fresh()
    rec = apply_finetune(model, _ft(strategy, **over))
    intended = {n for n, _ in model.named_parameters() if expect(n)}
    assert {n for n, p in model.named_parameters() if p.requires_grad} == intended
    assert _changed(model, _step(model)) == intended
    n_train = sum(p.numel() for n, p in model.named_parameters() if n in intended)
    assert rec["trainable"] == n_train and rec["frozen"] == rec["total"] - n_train > (0 if strategy not in
                                                                                       ("full", "discriminative") else -1)
    assert rec["strategy"] == strategy


def test_frozen_encoder_bn_statistics_do_not_move_in_train_mode(fresh):
    model = fresh()
    rec = apply_finetune(model, _ft("frozen"))
    enc0, dec0 = _bn_stats(model.encoder), _bn_stats(model.decoder)
    model.train()  # what Lightning does every epoch
    assert not any(m.training for m in model.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert model.decoder.training
    with torch.no_grad():
        model(torch.randn(2, 3, 64, 64) * 3 + 1)
    assert all(torch.equal(v, enc0[k]) for k, v in _bn_stats(model.encoder).items())
    assert any(not torch.equal(v, dec0[k]) for k, v in _bn_stats(model.decoder).items())  # decoder BN does move
    assert rec["frozen_norm_layers"] == 20 and rec["encoder_trainable"] == 0


def test_random_frozen_keeps_the_init_bit_identical(fresh):
    model = fresh()
    init = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    apply_finetune(model, _ft("random_frozen"), pretrain_record={"source": "scratch", "tensors_loaded": 0})
    for _ in range(2):
        _step(model)
    assert all(torch.equal(v, init[k]) for k, v in model.encoder.state_dict().items())
    with pytest.raises(ConfigError, match="random_frozen: pretrain=imagenet loaded 62 tensors; use pretrain=scratch"):
        apply_finetune(fresh(), _ft("random_frozen"), pretrain_record={"source": "imagenet", "tensors_loaded": 62})
    imagenet = OmegaConf.load(CONF / "pretrain/imagenet.yaml")
    with pytest.raises(ConfigError, match="but pretrain=imagenet loads weights; use pretrain=scratch"):
        check_finetune(_ft("random_frozen"), "r50", imagenet)


def test_discriminative_records_the_encoder_lr_factor(fresh):
    rec = apply_finetune(fresh(), _ft("discriminative", encoder_lr_factor=0.25))
    assert rec["encoder_lr_factor"] == 0.25 and rec["frozen"] == 0
    assert "encoder_lr_factor" not in apply_finetune(fresh(), _ft("full"))


def test_config_errors_name_the_option_and_choices():
    with pytest.raises(ConfigError, match=r"unknown finetune strategy .*'partial'; valid choices: discriminative, "
                                          r"frozen, full, last_n, linear, random_frozen"):
        check_finetune({"name": "partial"})
    with pytest.raises(ConfigError, match=r"finetune=last_n: n must be an integer in 0..5 for encoder=r50"):
        check_finetune(_ft("last_n", n=6), "r50")
    with pytest.raises(ConfigError, match=r"no stages declared for encoder=nope"):
        check_finetune(_ft("last_n"), "nope")
    with pytest.raises(ConfigError, match=r"finetune=frozen: unknown field\(s\) n; valid: description, name"):
        check_finetune({"name": "frozen", "n": 2})
    with pytest.raises(ConfigError, match=r"encoder_lr_factor must be a number >= 0"):
        check_finetune(_ft("discriminative", encoder_lr_factor=-1))


def test_last_n_stages_cover_every_backbone_parameter_of_every_encoder():
    stages = OmegaConf.to_container(_ft("last_n").stages)
    encoders = {p.stem: OmegaConf.load(p) for p in (CONF / "encoder").glob("*.yaml")}
    assert set(stages) == set(encoders)
    for name, enc in encoders.items():
        kw = {"img_size": 64} if enc.get("img_size_arg") else {}
        with torch.device("meta"):
            bb = timm.create_model(enc.timm_name, num_classes=0, **kw, **dict(enc.timm_kwargs))
        idx = stage_of([n for n, _ in bb.named_parameters()], stages[name], name)
        assert sorted(set(idx.values())) == list(range(len(stages[name]))), name  # no empty stage
    with pytest.raises(ConfigError, match=r"cover 2 backbone parameters zero or several times: \['fc.weight'"):
        stage_of(["conv1.weight", "fc.weight", "fc.bias"], [["conv1."]], "r18")


# ----------------------------------------------------------------------------- classifiers (r18, 32 px)


@pytest.fixture(scope="module")
def fresh_clf():
    from medtransfer.models import build_classifier

    torch.manual_seed(0)
    enc = OmegaConf.load(CONF / "encoder/r18.yaml")
    proto = build_classifier(enc, num_outputs=3, image_size=32)
    with torch.no_grad():  # as in `fresh`: let gradient reach every residual branch
        for m in proto.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
    state = {k: v.clone() for k, v in proto.state_dict().items()}

    def make():
        m = build_classifier(enc, num_outputs=3, image_size=32)
        m.load_state_dict(state)
        return m

    return make


@pytest.mark.parametrize("strategy,over,expect,pinned", [
    ("full", {}, lambda n: True, 0),
    ("discriminative", {}, lambda n: True, 0),
    ("frozen", {}, lambda n: n.startswith("head."), 20),  # every BatchNorm of resnet18
    ("random_frozen", {}, lambda n: n.startswith("head."), 20),
    ("last_n", {"n": 1}, lambda n: n.startswith(("head.", "encoder.backbone.layer4.")), 15),  # layer4 has 5
    ("linear", {}, lambda n: n.startswith("head."), 20),
])
def test_classifier_strategies_train_exactly_the_intended_parameters(fresh_clf, strategy, over, expect,
                                                                     pinned):
    model = fresh_clf()
    scratch = {"source": "scratch", "tensors_loaded": 0}
    rec = apply_finetune(model, _ft(strategy, **over), pretrain_record=scratch)
    intended = {n for n, _ in model.named_parameters() if expect(n)}
    assert {n for n, p in model.named_parameters() if p.requires_grad} == intended
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model.train()  # as Lightning does: pinned norm layers stay in eval
    torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 0])).backward()
    opt.step()
    assert _changed(model, before) == intended
    sizes = {n: p.numel() for n, p in model.named_parameters()}
    assert rec["trainable"] == sum(sizes[n] for n in intended)
    assert rec["encoder_trainable"] == sum(sizes[n] for n in intended if n.startswith("encoder."))
    bns = [m for m in model.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert sum(not m.training for m in bns) == rec["frozen_norm_layers"] == pinned


def test_classifier_linear_probe_is_the_head_alone(fresh_clf):
    model = fresh_clf()
    rec = apply_finetune(model, _ft("linear"))
    assert rec["trainable_module"] == "head"
    assert rec["trainable"] == sum(p.numel() for p in model.head.parameters()) == 512 * 3 + 3
    enc0 = _bn_stats(model.encoder)
    model.train()
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32) * 3 + 1)
    assert all(torch.equal(v, enc0[k]) for k, v in _bn_stats(model.encoder).items())  # BN statistics frozen
