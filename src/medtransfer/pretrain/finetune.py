"""Fine-tuning strategies (papers 003 and 004): which parameters train, and at what encoder LR.

`apply_finetune(model, cfg)` runs after the pretrained weights are loaded and before the optimizer is built.
It sets `requires_grad`, and pins every norm layer whose parameters are all frozen in eval mode: a "frozen"
BatchNorm that Lightning's `model.train()` puts back in train mode still moves its running statistics, so the
encoder would not be frozen at all. The pin is a per-module `train()` override, so no caller can undo it.

What counts as a stage for `last_n` is data (`conf/finetune/last_n.yaml`: per encoder, module-name prefixes of
`model.encoder.backbone`, input → output), checked to cover every backbone parameter exactly once.
"""

from __future__ import annotations

import types
from collections.abc import Mapping

from torch import nn

from medtransfer.configs import plain
from medtransfer.errors import ConfigError, choices_msg

STRATEGIES = {  # name → allowed config fields besides `name`
    "full": set(),
    "frozen": set(),
    "random_frozen": set(),
    "last_n": {"n", "stages"},
    "discriminative": {"encoder_lr_factor"},
    "linear": set(),
}
NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)
_ALWAYS = {"name", "description"}


def check_finetune(finetune_cfg: Mapping, encoder: str | None = None, pretrain_cfg: Mapping | None = None) -> None:
    """Config-time check (no model): known strategy and fields, N in range, stages declared for the encoder,
    random_frozen only with random weights (otherwise it is `frozen`, a different condition)."""
    cfg = plain(finetune_cfg)
    name = cfg.get("name")
    if name not in STRATEGIES:
        raise ConfigError(choices_msg("finetune strategy (conf/finetune/)", name, STRATEGIES))
    extra = sorted(set(cfg) - STRATEGIES[name] - _ALWAYS)
    if extra:
        raise ConfigError(f"finetune={name}: unknown field(s) {', '.join(extra)}; valid: "
                          f"{', '.join(sorted(STRATEGIES[name] | _ALWAYS))}")
    if name == "discriminative":
        f = cfg.get("encoder_lr_factor")
        if not isinstance(f, (int, float)) or isinstance(f, bool) or f < 0:
            raise ConfigError(f"finetune=discriminative: encoder_lr_factor must be a number >= 0, got {f!r}")
    if name == "last_n" and encoder is not None:
        stages = (cfg.get("stages") or {}).get(encoder)
        if not stages:
            raise ConfigError(f"finetune=last_n: no stages declared for encoder={encoder} in conf/finetune/last_n.yaml;"
                              f" declared: {', '.join(sorted(cfg.get('stages') or {})) or 'none'}")
        n = cfg.get("n")
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= len(stages):
            raise ConfigError(f"finetune=last_n: n must be an integer in 0..{len(stages)} for encoder={encoder} "
                              f"(its stages), got {n!r}")
    if name == "random_frozen" and pretrain_cfg is not None and plain(pretrain_cfg).get("kind") != "none":
        raise ConfigError(f"finetune=random_frozen keeps the encoder at its random init, but pretrain="
                          f"{plain(pretrain_cfg).get('name')} loads weights; use pretrain=scratch (or finetune=frozen)")


def stage_of(names: list[str], stages: list[list[str]], encoder: str) -> dict[str, int]:
    """Parameter name → stage index; every name in exactly one stage, else a ConfigError naming them."""
    out, multi = {}, []
    for n in names:
        hits = [i for i, prefixes in enumerate(stages) if any(n.startswith(p) for p in prefixes)]
        if len(hits) == 1:
            out[n] = hits[0]
        else:
            multi.append(n)
    if multi:
        raise ConfigError(f"finetune=last_n: stages for encoder={encoder} in conf/finetune/last_n.yaml cover "
                          f"{len(multi)} backbone parameters zero or several times: {multi[:6]}")
    return out


def _encoder_name(model) -> str | None:
    return getattr(model, "encoder_name", None) or getattr(getattr(model.encoder, "spec", None), "name", None)


def _classifier(model) -> tuple[str, nn.Module]:
    """The final classifier: a classification model's ``head`` (its Linear), else the last Conv2d registered
    outside the encoder (smp/ours put the segmentation head last)."""
    if isinstance(getattr(model, "head", None), nn.Linear):
        return "head", model.head
    enc = {id(m) for m in model.encoder.modules()}
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and id(m) not in enc]
    if not convs:
        raise ConfigError("finetune=linear: the model has no Linear head nor a Conv2d outside the encoder "
                          "to train")
    return convs[-1]


def _pin_eval(module: nn.Module) -> None:
    def train(self, mode: bool = True):
        return nn.Module.train(self, False)

    module.train = types.MethodType(train, module)
    module.eval()


def apply_finetune(model: nn.Module, finetune_cfg: Mapping, pretrain_record: Mapping | None = None) -> dict:
    """Set what trains; returns the record for results.json (counts, and `encoder_lr_factor` for
    `discriminative`, which the optimizer multiplies into the encoder group's LR)."""
    cfg = plain(finetune_cfg)
    name = cfg.get("name")
    encoder = _encoder_name(model)
    check_finetune(cfg, encoder)
    if name == "random_frozen" and pretrain_record and pretrain_record.get("tensors_loaded"):
        raise ConfigError(f"finetune=random_frozen: pretrain={pretrain_record.get('source')} loaded "
                          f"{pretrain_record['tensors_loaded']} tensors; use pretrain=scratch")
    enc_ids = {id(p) for p in model.encoder.parameters()}
    record: dict = {"strategy": name}
    trains = {id(p): True for p in model.parameters()}
    if name in ("frozen", "random_frozen"):
        trains.update({i: False for i in enc_ids})
    elif name == "last_n":
        stages = cfg["stages"][encoder]
        n = int(cfg["n"])
        named = dict(model.encoder.backbone.named_parameters())
        idx = stage_of(list(named), stages, encoder)
        first = len(stages) - n
        trains.update({id(p): idx[k] >= first for k, p in named.items()})
        record.update(n=n, stages=len(stages), trainable_stages=[s for s in stages[first:]])
    elif name == "linear":
        head_name, head = _classifier(model)
        keep = {id(p) for p in head.parameters()}
        trains = {id(p): id(p) in keep for p in model.parameters()}
        record["trainable_module"] = head_name
    elif name == "discriminative":
        record["encoder_lr_factor"] = float(cfg["encoder_lr_factor"])
    for p in model.parameters():
        p.requires_grad_(trains[id(p)])
    pinned = []
    for mname, m in model.named_modules():
        params = list(m.parameters(recurse=False))
        if isinstance(m, NORMS) and params and not any(p.requires_grad for p in params):
            _pin_eval(m)
            pinned.append(mname)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    enc_train = sum(p.numel() for p in model.encoder.parameters() if p.requires_grad)
    enc_total = sum(p.numel() for p in model.encoder.parameters())
    record.update(total=total, trainable=trainable, frozen=total - trainable, encoder_trainable=enc_train,
                  encoder_frozen=enc_total - enc_train, frozen_norm_layers=len(pinned))
    return record
