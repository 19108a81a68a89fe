import pytest
import torch
import torch.nn.functional as F

from medtransfer.train.losses import BCEDiceLoss


def test_bce_only_equals_torch_bce():
    logits, target = torch.randn(2, 1, 8, 8), (torch.rand(2, 1, 8, 8) > 0.5).float()
    assert BCEDiceLoss(1, 0)(logits, target) == pytest.approx(F.binary_cross_entropy_with_logits(logits, target).item())


def test_dice_hand_worked():
    # probabilities exactly 0/1 via huge logits: image 1 predicts 2 px, target 2 px, overlap 1 px
    logits = torch.full((1, 1, 2, 2), -50.0)
    logits[0, 0, 0, 0] = logits[0, 0, 0, 1] = 50.0
    target = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
    smooth = 1.0
    expected = 1 - (2 * 1 + smooth) / (2 + 2 + smooth)
    assert BCEDiceLoss(0, 1, smooth=smooth)(logits, target).item() == pytest.approx(expected, abs=1e-6)


def test_rejects_zero_weights():
    with pytest.raises(ValueError, match="not both 0"):
        BCEDiceLoss(0, 0)
