"""Distillation losses: hard labels, soft labels with temperature, their mix, and features.

All are pure functions on tensors; :class:`DistillationLoss` is the thin configured wrapper the
learner uses. Where the teacher itself is unsure (night, fog), ``distill.confidence_weighting``
weighs each pixel of both terms by the teacher's confidence in its own soft logits
(:func:`confidence_weights`), rescaled to a mean of 1 over the labelled pixels of each term.

Example:
    >>> import torch
    >>> student = torch.zeros(2, 19, 4, 4, requires_grad=True)
    >>> teacher = torch.randn(2, 19, 4, 4)
    >>> labels = teacher.argmax(1)
    >>> loss = DistillationLoss(DistillationConfig())(student, labels, teacher)
    >>> loss.backward(); student.grad.shape
    torch.Size([2, 19, 4, 4])
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from learners.configs import CONFIDENCE_WEIGHTINGS, DistillationConfig
from perception.labels import IGNORE_INDEX


def class_balance_weights(labels: torch.Tensor, num_classes: int, power: float, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Per-class weights ``freq ** -power`` from the labels at hand, normalised so the
    labelled pixels keep a mean weight of 1 (``power`` 0 = plain cross-entropy, 0.5 = the
    usual square-root balancing that lifts thin and rare classes such as poles and signs).

    Shape:
        labels (B, H, W) int64 -> (num_classes,) float

    Example:
        >>> w = class_balance_weights(torch.tensor([[[0, 0, 0, 1]]]), 3, 0.5)
        >>> bool(w[1] > w[0]), round(float((w[0] * 3 + w[1]) / 4), 4)
        (True, 1.0)
    """
    valid = labels[labels != ignore_index]  # (N,)
    counts = torch.bincount(valid, minlength=num_classes)[:num_classes].float()  # (K,)
    weights = torch.where(counts > 0, counts.clamp_min(1.0) ** -power, torch.zeros_like(counts))  # (K,)
    mean = (weights * counts).sum() / counts.sum().clamp_min(1.0)
    return weights / mean.clamp_min(1e-12)


@torch.no_grad()
def confidence_weights(teacher_logits: torch.Tensor, mode: str, floor: float = 0.0, power: float = 1.0) -> torch.Tensor:
    """Per-pixel weights in [floor, 1] from the teacher's confidence in its own logits (softmax at
    temperature 1): ``floor + (1 - floor) * confidence ** power``, where the confidence is the
    top class probability (``"maxprob"``, in [1/K, 1]) or 1 - the entropy / ln K (``"entropy"``,
    in [0, 1]). Not normalised: each loss term rescales them over its own labelled pixels
    (:func:`normalised_weights`).

    Shape:
        teacher_logits (B, K, h, w) -> (B, h, w) float32

    Example:
        >>> sure = torch.zeros(1, 4, 1, 1); sure[:, 0] = 30.0
        >>> logits = torch.cat([sure, torch.zeros(1, 4, 1, 1)], dim=3)  # (1, 4, 1, 2): sure, then uniform
        >>> confidence_weights(logits, "maxprob")[0, 0].tolist(), confidence_weights(logits, "entropy")[0, 0].tolist()
        ([1.0, 0.25], [1.0, 0.0])
        >>> [round(v, 3) for v in confidence_weights(logits, "entropy", floor=0.2)[0, 0].tolist()]
        [1.0, 0.2]
    """
    if mode not in CONFIDENCE_WEIGHTINGS or mode == "none":
        raise ValueError(f"confidence_weighting: expected maxprob or entropy here, got {mode!r}")
    log_p = F.log_softmax(teacher_logits.float(), dim=1)  # (B, K, h, w)
    if mode == "maxprob":
        confidence = log_p.amax(dim=1).exp()  # (B, h, w)
    else:
        entropy = -(log_p.exp() * log_p).sum(dim=1) / math.log(teacher_logits.shape[1])  # (B, h, w)
        confidence = (1.0 - entropy).clamp(0.0, 1.0)  # (B, h, w)
    if power != 1.0:
        confidence = confidence**power
    return floor + (1.0 - floor) * confidence if floor > 0 else confidence


def weights_on_grid(weights: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Pixel weights brought to another grid: averaged over each cell when shrinking
    (adaptive average pooling), bilinear otherwise.

    Shape:
        weights (B, h, w) -> (B, size[0], size[1])

    Example:
        >>> weights_on_grid(torch.tensor([[[1.0, 0.0], [1.0, 0.0]]]), (1, 1)).tolist()
        [[[0.5]]]
    """
    if tuple(weights.shape[-2:]) == tuple(size):
        return weights
    if size[0] <= weights.shape[-2] and size[1] <= weights.shape[-1]:
        return F.adaptive_avg_pool2d(weights[:, None], tuple(size))[:, 0]  # (B, H', W')
    return F.interpolate(weights[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]  # (B, H', W')


def normalised_weights(weights: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """``weights`` divided by their mean over the ``valid`` pixels (all pixels when None), so
    that they keep the loss on the scale of an unweighted one (a batch of equally sure pixels
    weighs exactly 1 each).

    Shape:
        weights (B, h, w), valid (B, h, w) bool -> (B, h, w)

    Example:
        >>> w = normalised_weights(torch.tensor([[[0.2, 0.6, 9.0]]]), torch.tensor([[[True, True, False]]]))
        >>> [round(v, 3) for v in w[0, 0].tolist()]
        [0.5, 1.5, 22.5]
    """
    mean = weights.mean() if valid is None else (weights * valid).sum() / valid.sum().clamp_min(1)
    return weights / mean.clamp_min(1e-12)


def hard_label_loss(student_logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX,
                    class_balance: float = 0.0, pixel_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy against the teacher's argmax (or ground truth); ignored pixels skipped.

    Logits on a coarser grid than the labels (a network's own output stride) are scored
    against the labels sampled at that grid (nearest). ``pixel_weights`` (e.g. the teacher's
    confidence, :func:`confidence_weights`) are brought to that grid as well and rescaled to
    a mean of 1 over the labelled pixels there; they multiply the class weights.

    Shape:
        student_logits (B, K, h, w), labels (B, H, W) int64, pixel_weights (B, h', w') -> scalar
    """
    if labels.shape[-2:] != student_logits.shape[-2:]:
        labels = F.interpolate(labels[:, None].float(), size=student_logits.shape[-2:], mode="nearest")[:, 0].long()  # (B, h, w)
    if (labels != ignore_index).sum() == 0:
        return student_logits.sum() * 0.0
    weight = None
    if pixel_weights is not None:
        valid = labels != ignore_index  # (B, h, w)
        pixel = normalised_weights(weights_on_grid(pixel_weights.float(), labels.shape[-2:]), valid)  # (B, h, w)
        if class_balance > 0:
            weight = class_balance_weights(labels, student_logits.shape[1], class_balance, ignore_index)
        per_pixel = F.cross_entropy(student_logits, labels, weight=weight, ignore_index=ignore_index, reduction="none")  # (B, h, w)
        return (per_pixel * pixel).sum() / valid.sum()
    if class_balance > 0:
        weight = class_balance_weights(labels, student_logits.shape[1], class_balance, ignore_index)
        return (F.cross_entropy(student_logits, labels, weight=weight, ignore_index=ignore_index, reduction="sum")
                / (labels != ignore_index).sum())
    return F.cross_entropy(student_logits, labels, ignore_index=ignore_index)


def soft_label_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 2.0,
    valid: torch.Tensor | None = None,
    pixel_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """KL(teacher || student) of temperature-softened distributions, times T^2 (Hinton et al.).

    Teacher logits at a lower resolution (teachers ship them pooled) are matched by pooling
    the student's logits to the same grid: the soft targets carry no detail finer than that,
    and the loss costs a fraction of a full-resolution one. ``pixel_weights`` (brought to the
    teacher's grid) weigh each pixel's KL, rescaled to a mean of 1 over the valid pixels.

    Shape:
        student_logits (B, K, H, W), teacher_logits (B, K, h, w), valid (B, H, W) bool,
        pixel_weights (B, h', w') -> scalar
    """
    size = teacher_logits.shape[-2:]
    if student_logits.shape[-2:] != size:
        student_logits = F.adaptive_avg_pool2d(student_logits, size)  # (B, K, h, w)
    if valid is not None and valid.shape[-2:] != size:  # the mask is at frame size, the logits may not be
        valid = F.adaptive_avg_pool2d(valid[:, None].float(), size)[:, 0] > 0.5  # (B, h, w)
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)  # (B, K, H, W)
    p_teacher = F.softmax(teacher_logits / temperature, dim=1)  # (B, K, H, W)
    kl = (p_teacher * (torch.log(p_teacher.clamp_min(1e-8)) - log_p_student)).sum(1)  # (B, H, W)
    if pixel_weights is not None:
        kl = kl * normalised_weights(weights_on_grid(pixel_weights.float(), size), valid)  # (B, h, w)
    if valid is not None:
        count = valid.sum()
        if count == 0:
            return student_logits.sum() * 0.0
        kl = (kl * valid).sum() / count
    else:
        kl = kl.mean()
    return kl * temperature**2


def feature_loss(student_features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
    """Mean squared error between channel-normalised feature maps (sizes matched bilinearly).

    Shape:
        student_features (B, C, H, W), teacher_features (B, C, h, w) -> scalar
    """
    if teacher_features.shape[-2:] != student_features.shape[-2:]:
        teacher_features = F.interpolate(teacher_features, size=student_features.shape[-2:], mode="bilinear", align_corners=False)
    return F.mse_loss(F.normalize(student_features, dim=1), F.normalize(teacher_features, dim=1))


def feature_distance(student_features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
    """:func:`feature_loss` times the channel count: the mean over pixels of the squared distance
    between the two unit feature vectors, ``2 - 2 cos`` (0 = the same direction, 4 = opposite),
    a scale that does not shrink as the teacher's layer gets wider.

    Shape:
        student_features (B, C, H, W), teacher_features (B, C, h, w) -> scalar

    Example:
        >>> a = torch.tensor([[[[1.0]], [[0.0]]]])  # (1, 2, 1, 1)
        >>> float(feature_distance(a, a)), float(feature_distance(a, -a)), float(feature_distance(a, a.flip(1)))
        (0.0, 4.0, 2.0)
    """
    return feature_loss(student_features, teacher_features) * student_features.shape[1]


class DistillationLoss:
    """alpha * hard + (1 - alpha) * soft, the mix every distillation recipe starts from.

    With ``confidence_weighting`` other than "none", both terms weigh each pixel by the
    teacher's confidence (:func:`confidence_weights` of ``teacher_logits``); a batch without
    teacher logits is weighed evenly.

    Example:
        >>> torch.manual_seed(0) and None
        >>> student, teacher = torch.randn(2, 19, 8, 8), torch.randn(2, 19, 2, 2) * 3
        >>> labels = torch.randint(0, 19, (2, 8, 8))
        >>> plain = DistillationLoss(DistillationConfig())(student, labels, teacher)
        >>> weighted = DistillationLoss(DistillationConfig(confidence_weighting="entropy"))(student, labels, teacher)
        >>> bool(plain != weighted), bool(plain == DistillationLoss(DistillationConfig())(student, labels, teacher))
        (True, True)
    """

    def __init__(self, config: DistillationConfig):
        self.config = config

    def pixel_weights(self, teacher_logits: torch.Tensor | None) -> torch.Tensor | None:
        """The teacher-confidence weights of a batch on the teacher's grid, or None (no weighting).

        Shape: teacher_logits (B, K, h, w) -> (B, h, w)
        """
        mode = self.config.confidence_weighting
        if mode == "none" or teacher_logits is None:
            return None
        return confidence_weights(teacher_logits, mode, self.config.confidence_floor, self.config.confidence_power)

    def __call__(self, student_logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor | None) -> torch.Tensor:
        """Shape: student_logits (B, K, H, W), labels (B, H, W), teacher_logits (B, K, h, w) -> scalar."""
        alpha = self.config.alpha
        weights = self.pixel_weights(teacher_logits)  # (B, h, w) or None
        loss = (hard_label_loss(student_logits, labels, class_balance=self.config.class_balance, pixel_weights=weights) * alpha
                if alpha > 0 else student_logits.sum() * 0.0)
        if alpha < 1.0 and teacher_logits is not None:
            valid = labels != IGNORE_INDEX  # (B, H, W)
            loss = loss + (1.0 - alpha) * soft_label_loss(student_logits, teacher_logits, self.config.temperature, valid,
                                                          pixel_weights=weights)
        return loss
