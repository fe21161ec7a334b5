"""Distillation losses: hard labels, soft labels with temperature, their mix, and features.

All are pure functions on tensors; :class:`DistillationLoss` is the thin configured wrapper the
learner uses.

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

import torch
import torch.nn.functional as F

from learners.configs import DistillationConfig
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


def hard_label_loss(student_logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX,
                    class_balance: float = 0.0) -> torch.Tensor:
    """Cross-entropy against the teacher's argmax (or ground truth); ignored pixels skipped.

    Logits on a coarser grid than the labels (a network's own output stride) are scored
    against the labels sampled at that grid (nearest).

    Shape:
        student_logits (B, K, h, w), labels (B, H, W) int64 -> scalar
    """
    if labels.shape[-2:] != student_logits.shape[-2:]:
        labels = F.interpolate(labels[:, None].float(), size=student_logits.shape[-2:], mode="nearest")[:, 0].long()  # (B, h, w)
    if (labels != ignore_index).sum() == 0:
        return student_logits.sum() * 0.0
    weight = None
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
) -> torch.Tensor:
    """KL(teacher || student) of temperature-softened distributions, times T^2 (Hinton et al.).

    Teacher logits at a lower resolution (teachers ship them pooled) are matched by pooling
    the student's logits to the same grid: the soft targets carry no detail finer than that,
    and the loss costs a fraction of a full-resolution one.

    Shape:
        student_logits (B, K, H, W), teacher_logits (B, K, h, w), valid (B, H, W) bool -> scalar
    """
    size = teacher_logits.shape[-2:]
    if student_logits.shape[-2:] != size:
        student_logits = F.adaptive_avg_pool2d(student_logits, size)  # (B, K, h, w)
    if valid is not None and valid.shape[-2:] != size:  # the mask is at frame size, the logits may not be
        valid = F.adaptive_avg_pool2d(valid[:, None].float(), size)[:, 0] > 0.5  # (B, h, w)
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)  # (B, K, H, W)
    p_teacher = F.softmax(teacher_logits / temperature, dim=1)  # (B, K, H, W)
    kl = (p_teacher * (torch.log(p_teacher.clamp_min(1e-8)) - log_p_student)).sum(1)  # (B, H, W)
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
    """alpha * hard + (1 - alpha) * soft, the mix every distillation recipe starts from."""

    def __init__(self, config: DistillationConfig):
        self.config = config

    def __call__(self, student_logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor | None) -> torch.Tensor:
        """Shape: student_logits (B, K, H, W), labels (B, H, W), teacher_logits (B, K, h, w) -> scalar."""
        alpha = self.config.alpha
        loss = (hard_label_loss(student_logits, labels, class_balance=self.config.class_balance) * alpha
                if alpha > 0 else student_logits.sum() * 0.0)
        if alpha < 1.0 and teacher_logits is not None:
            valid = labels != IGNORE_INDEX  # (B, H, W)
            loss = loss + (1.0 - alpha) * soft_label_loss(student_logits, teacher_logits, self.config.temperature, valid)
        return loss
