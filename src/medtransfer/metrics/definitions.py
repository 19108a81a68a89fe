"""The one place metric names and definitions are pinned.

Why a separate module: the README table, ``results.json`` consumers and the metric code must agree on what
"dice" means. Codebases disagree (per-image mean vs pixels pooled over the dataset; 0/0 → NaN, 0 or 1;
``>`` vs ``>=`` at the threshold) and those choices move published numbers by more than the effects the
studies look for. So every number medtransfer reports carries a name whose definition is written here, once.
"""

from __future__ import annotations

#: Default binarisation threshold on foreground probabilities; a pixel is foreground iff ``prob >= THRESHOLD``
#: (inclusive, like ``smp.metrics.get_stats``; equivalently ``logit >= 0``).
THRESHOLD = 0.5

#: Value of a per-image (or pooled) ratio whose denominator is zero: 1.0 if the image has no errors
#: (fp + fn == 0), else 0.0. nnU-Net uses NaN + nanmean instead; we keep every image in the mean.
EMPTY_POLICY = "0/0 -> 1.0 if the image has no errors (fp + fn == 0), else 0.0"

METRIC_DOCS: dict[str, str] = {
    # --- per-image means (the papers' convention: SSL4GIE, smp "*-imagewise", nnU-Net per-case) ---
    "dice_per_image": "mean over images of 2TP/(2TP+FP+FN) at probability >= 0.5; "
    "0/0 (both masks empty) -> 1",
    "iou_per_image": "mean over images of TP/(TP+FP+FN) at probability >= 0.5; 0/0 (both masks empty) -> 1",
    "precision": "per-image precision TP/(TP+FP) at probability >= 0.5, mean over images; "
    "0/0 (empty prediction) -> 1 if the image has no errors (target also empty), else 0",
    "recall": "per-image recall (sensitivity) TP/(TP+FN) at probability >= 0.5, mean over images; "
    "0/0 (empty target) -> 1 if the image has no errors (prediction also empty), else 0",
    "accuracy": "per-image pixel accuracy (TP+TN)/(H*W) at probability >= 0.5, mean over images",
    # --- pooled over the dataset (MMSeg IoUMetric / smp "micro" style) ---
    "dice_pooled": "2*sum(TP)/(2*sum(TP)+sum(FP)+sum(FN)) with counts summed over all pixels of all images "
    "at probability >= 0.5 (MMSeg Dice[1], the foreground class); 0/0 -> 1",
    "iou_pooled": "sum(TP)/(sum(TP)+sum(FP)+sum(FN)) with counts summed over all pixels of all images "
    "at probability >= 0.5 (MMSeg IoU[1], the foreground class); 0/0 -> 1",
    # --- MMSegmentation's IoUMetric (paper 000), all pooled: classes background = 0, foreground = 1; per
    #     class c, MMSeg's areas are intersect_c, pred_c, label_c summed over the dataset (ignore_index ==
    #     outside the counted region), then IoU_c = I/(P+L-I), Dice_c = 2I/(P+L), Acc_c = I/L. MMSeg's
    #     IoU[1] and Dice[1] are iou_pooled and dice_pooled; its 0/0 -> NaN + nanmean is replaced by our
    #     0/0 policy (differs only when a class is absent from the whole dataset's targets) ---
    "accuracy_pooled": "MMSeg aAcc: (sum(TP)+sum(TN))/(sum(TP)+sum(FP)+sum(FN)+sum(TN)), counts summed over "
    "all pixels of all images at probability >= 0.5 (pixel accuracy of the pooled dataset); 0/0 -> 1",
    "recall_pooled": "MMSeg per-class Acc of the foreground class, Acc[1] = sum(TP)/(sum(TP)+sum(FN)), counts "
    "summed over all images at probability >= 0.5 (pooled recall); this is paper 000's 'OA' column, not "
    "pixel accuracy (its OA is below its Dice); 0/0 -> 1 if sum(FP) == 0, else 0",
    "specificity_pooled": "MMSeg per-class Acc of the background class, Acc[0] = sum(TN)/(sum(TN)+sum(FP)), "
    "counts summed over all images at probability >= 0.5 (pooled specificity); 0/0 -> 1 if sum(FN) == 0, "
    "else 0",
    "iou_background_pooled": "MMSeg IoU[0] = sum(TN)/(sum(TN)+sum(FP)+sum(FN)), counts summed over all images "
    "at probability >= 0.5; 0/0 -> 1",
    "dice_background_pooled": "MMSeg Dice[0] = 2*sum(TN)/(2*sum(TN)+sum(FP)+sum(FN)), counts summed over all "
    "images at probability >= 0.5; 0/0 -> 1",
    "miou_pooled": "MMSeg mIoU over the two classes: (iou_background_pooled + iou_pooled)/2",
    "mdice_pooled": "MMSeg mDice over the two classes: (dice_background_pooled + dice_pooled)/2",
    "macc_pooled": "MMSeg mAcc over the two classes: (specificity_pooled + recall_pooled)/2",
    # --- counts that say how often the empty-mask policy applied ---
    "n_images": "number of images evaluated",
    "n_empty_target": "number of images whose target mask is empty (TP+FN == 0)",
    "n_empty_both": "number of images whose target and prediction are both empty (Dice 0/0, scored 1)",
    # --- surface distances (MONAI, evaluation only) ---
    "hd95": "mean over images of the 95th-percentile symmetric Hausdorff distance between prediction and "
    "target boundaries, max(P95(pred->target), P95(target->pred)), in surface_unit (pixels unless the "
    "dataset gives its pixel spacing); both empty -> 0, exactly one empty -> max possible distance "
    "(pixel-centre image diagonal, in the same unit)",
    "assd": "mean over images of the average symmetric surface distance (mean of the pooled pred->target "
    "and target->pred boundary distances), in surface_unit; both empty -> 0, exactly one empty -> "
    "max possible distance (pixel-centre image diagonal, in the same unit)",
    "surface_unit": "unit of hd95 and assd: 'px' (pixel-centre distances, no spacing) or 'mm' (distances "
    "scaled by the dataset's (row, column) pixel spacing in mm per pixel)",
    "n_surface_both_empty": "images where prediction and target were both empty (hd95 = assd = 0)",
    "n_surface_pred_empty": "images with an empty prediction but non-empty target (hd95 = assd = diagonal)",
    "n_surface_target_empty": "images with an empty target but non-empty prediction (hd95 = assd = diagonal)",
}

#: Classification (``ClsMetrics``): what happens to a label whose value is undefined. Why NaN and leave it out
#: rather than score it: a label without positives in a test split has no ROC curve, and scoring it 0.0 and
#: keeping it in the mean (torchmetrics 1.9.0) reports a mean AUC no paper's scikit-learn protocol produces.
CLS_NAN_POLICY = (
    "a label's value with a zero denominator is NaN (AUROC: no positive or no negative among the label's "
    "evaluated cases; sensitivity: no positives; specificity: no negatives; F1: no positives and no "
    "predicted positives; accuracy: no evaluated cases; balanced accuracy: sensitivity or specificity NaN) "
    "and is left out of the macro mean; NaN when no label has a value"
)

#: Every key ``ClsMetrics.compute`` returns. "Label" is one of the task's labels: the one label (binary), each
#: of the L labels (multilabel; cases whose target is -1 for a label are left out of that label only), or
#: each class one-vs-rest (multiclass). Binary/multilabel predict positive iff probability >= THRESHOLD (0.5,
#: inclusive); multiclass predicts the argmax class (the first among equal maxima).
CLS_METRIC_DOCS: dict[str, str] = {
    "auroc": "macro mean over labels (multiclass: one-vs-rest per class on that class's softmax probability) "
    "of each label's ROC AUC (= sklearn.metrics.roc_auc_score: Mann-Whitney U / (n_pos*n_neg), ties 1/2); "
    "labels without both a positive and a negative case are NaN and left out (n_labels_auroc counts those "
    "kept); all left out -> NaN",
    "auroc/<label>": "ROC AUC of one label (multiclass: one class vs the rest) over its non-ignored cases; "
    "NaN without both a positive and a negative case",
    "accuracy": "binary/multilabel: macro mean over labels of (TP+TN)/(TP+FP+FN+TN) at probability >= 0.5 "
    "over the label's non-ignored cases (not scikit-learn's multilabel subset accuracy); multiclass: top-1 "
    "accuracy, fraction of cases whose argmax class is the target",
    "balanced_accuracy": "binary/multilabel: macro mean over labels of (sensitivity+specificity)/2 at "
    "probability >= 0.5 (NaN for a label where either is NaN); multiclass: mean over classes of recall "
    "(classes without cases left out, = sklearn balanced_accuracy_score; equals sensitivity)",
    "f1": "macro mean over labels (multiclass: classes one-vs-rest from the argmax) of 2TP/(2TP+FP+FN) at "
    "probability >= 0.5; 0/0 -> NaN, left out (sklearn f1_score(average='macro', zero_division=nan))",
    "sensitivity": "macro mean over labels (multiclass: classes one-vs-rest from the argmax) of recall "
    "TP/(TP+FN) at probability >= 0.5; a label without positives is NaN, left out",
    "specificity": "macro mean over labels (multiclass: classes one-vs-rest from the argmax) of TN/(TN+FP) "
    "at probability >= 0.5; a label without negatives is NaN, left out",
    "n_cases": "number of cases (images) evaluated, ignored entries included",
    "n_labels_auroc": "number of labels (multiclass: classes) whose AUROC entered the auroc mean",
}

# "accuracy" already names the segmentation per-image pixel accuracy above; ClsMetrics' accuracy is
# CLS_METRIC_DOCS["accuracy"]. Every other classification key is added to the one table.
METRIC_DOCS.update({k: v for k, v in CLS_METRIC_DOCS.items() if k != "accuracy"})
