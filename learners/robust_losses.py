"""Robust distillation losses: the student learns the teacher's clean answers on attacked and
corrupted views of a frame as well as on the frame itself.

Three recipes from adversarial robustness distillation, for dense (per-pixel) outputs:

* ARD (Goldblum et al. 2020): ``(1 - mix) * clean + mix * T^2 KL(t(x) || s(x_adv))``, the
  clean term being the usual distillation mix (:class:`learners.losses.DistillationLoss`);
* RSLAD (Zi et al. 2021): the teacher's soft labels replace the hard ones in every term,
  ``(1 - mix) * T^2 KL(t(x) || s(x)) + mix * T^2 KL(t(x) || s(x_adv))``, no cross-entropy;
* TRADES (Zhang et al. 2019): ``clean + beta * KL(s(x) || s(x_adv))`` at temperature 1. As in
  the original, the student's clean output is *not* detached: the robust term also pulls the
  clean prediction towards the adversarial one (a smoother function around the frame).

``t`` are the teacher's logits of the CLEAN frame, ``s`` the student's. Teacher logits on a
coarser grid than the student's are matched by pooling the student's logits to it (as
:func:`learners.losses.soft_label_loss` does); pixels whose label is 255 are left out of every
term. Without teacher logits the soft targets fall back to the hard labels: the KL against a
one-hot target is the cross-entropy, taken at temperature 1 (no T^2 factor).

Example:
    >>> import torch
    >>> from learners.configs import DistillationConfig, RobustDistillConfig
    >>> clean = torch.randn(2, 19, 4, 4, requires_grad=True)
    >>> adv = clean.detach() + 0.1 * torch.randn(2, 19, 4, 4)
    >>> labels = torch.randint(0, 19, (2, 8, 8))
    >>> loss = RobustDistillationLoss(RobustDistillConfig(loss="ard"), DistillationConfig())
    >>> total, parts = loss(clean, adv, labels, torch.randn(2, 19, 2, 2))
    >>> sorted(parts), total.requires_grad
    (['clean_loss', 'robust_loss'], True)
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from learners.configs import DistillationConfig, RobustDistillConfig
from learners.losses import DistillationLoss, hard_label_loss, soft_label_loss
from perception.labels import IGNORE_INDEX


class RobustTerms(NamedTuple):
    """A robust loss and the two terms it weighs (all scalars)."""

    total: torch.Tensor
    clean: torch.Tensor
    robust: torch.Tensor


def teacher_target_loss(student_logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor | None,
                        temperature: float) -> torch.Tensor:
    """``T^2 KL(t || s)`` on the labelled pixels, or, without teacher logits, the
    cross-entropy against the hard labels (the KL against one-hot targets, at T = 1).

    Shape:
        student_logits (B, K, h, w), labels (B, H, W) int64, teacher_logits (B, K, h', w') or None -> scalar

    Example:
        >>> s = torch.zeros(1, 2, 1, 1)
        >>> round(float(teacher_target_loss(s, torch.tensor([[[0]]]), None, 2.0)), 4)  # ln 2
        0.6931
        >>> float(teacher_target_loss(s, torch.tensor([[[0]]]), torch.zeros(1, 2, 1, 1), 2.0))
        0.0
    """
    if teacher_logits is None:
        return hard_label_loss(student_logits, labels)
    return soft_label_loss(student_logits, teacher_logits, temperature, labels != IGNORE_INDEX)


def self_kl(clean_logits: torch.Tensor, adv_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``KL(s(x) || s(x_adv))`` at temperature 1, averaged over the labelled pixels (both
    sides from ``log_softmax``, so it is exactly 0 when the two outputs agree). Gradients flow
    into both sides.

    Shape:
        clean_logits, adv_logits (B, K, h, w), labels (B, H, W) int64 -> scalar

    Example:
        >>> a = torch.tensor([[[[0.0]], [[0.0]]]])  # (1, 2, 1, 1): p = (1/2, 1/2)
        >>> b = torch.tensor([[[[0.0]], [[1.0]]]])
        >>> round(float(self_kl(a, b, torch.tensor([[[1]]]))), 4)  # ln(1 + e) - 1/2 - ln 2
        0.1201
    """
    valid = labels != IGNORE_INDEX  # (B, H, W)
    size = clean_logits.shape[-2:]
    if valid.shape[-2:] != size:  # the labels are at frame size, the logits may not be
        valid = F.adaptive_avg_pool2d(valid[:, None].float(), size)[:, 0] > 0.5  # (B, h, w)
    log_p = F.log_softmax(clean_logits, dim=1)  # (B, K, h, w)
    log_q = F.log_softmax(adv_logits, dim=1)  # (B, K, h, w)
    kl = (log_p.exp() * (log_p - log_q)).sum(1)  # (B, h, w)
    count = valid.sum()
    if count == 0:
        return (clean_logits.sum() + adv_logits.sum()) * 0.0
    return (kl * valid).sum() / count


def ard_loss(clean_logits: torch.Tensor, adv_logits: torch.Tensor, labels: torch.Tensor,
             teacher_logits: torch.Tensor | None, distill: DistillationConfig, mix: float,
             temperature: float) -> RobustTerms:
    """Adversarially robust distillation: ``(1 - mix) * distill(s(x)) + mix * T^2 KL(t(x) || s(x_adv))``.

    Shape:
        clean_logits, adv_logits (B, K, h, w), labels (B, H, W), teacher_logits (B, K, h', w') or None -> scalars

    Example:
        >>> s = torch.zeros(1, 2, 1, 1)
        >>> terms = ard_loss(s, s, torch.tensor([[[0]]]), None, DistillationConfig(alpha=1.0), 0.5, 2.0)
        >>> [round(float(v), 4) for v in terms]
        [0.6931, 0.6931, 0.6931]
    """
    clean = DistillationLoss(distill)(clean_logits, labels, teacher_logits)
    robust = teacher_target_loss(adv_logits, labels, teacher_logits, temperature)
    return RobustTerms((1.0 - mix) * clean + mix * robust, clean, robust)


def rslad_loss(clean_logits: torch.Tensor, adv_logits: torch.Tensor, labels: torch.Tensor,
               teacher_logits: torch.Tensor | None, mix: float, temperature: float) -> RobustTerms:
    """Robust soft-label distillation: ``(1 - mix) * T^2 KL(t(x) || s(x)) + mix * T^2 KL(t(x) || s(x_adv))``.

    Shape:
        clean_logits, adv_logits (B, K, h, w), labels (B, H, W), teacher_logits (B, K, h', w') or None -> scalars

    Example:
        >>> s, t = torch.zeros(1, 2, 1, 1), torch.zeros(1, 2, 1, 1)
        >>> float(rslad_loss(s, s, torch.tensor([[[0]]]), t, 0.5, 2.0).total)
        0.0
    """
    clean = teacher_target_loss(clean_logits, labels, teacher_logits, temperature)
    robust = teacher_target_loss(adv_logits, labels, teacher_logits, temperature)
    return RobustTerms((1.0 - mix) * clean + mix * robust, clean, robust)


def trades_loss(clean_logits: torch.Tensor, adv_logits: torch.Tensor, labels: torch.Tensor,
                teacher_logits: torch.Tensor | None, distill: DistillationConfig, beta: float) -> RobustTerms:
    """TRADES: ``distill(s(x)) + beta * KL(s(x) || s(x_adv))`` (temperature 1, the clean side
    not detached, as in the paper's code), on the labelled pixels.

    Shape:
        clean_logits, adv_logits (B, K, h, w), labels (B, H, W), teacher_logits (B, K, h', w') or None -> scalars

    Example:
        >>> s = torch.randn(1, 3, 2, 2)
        >>> float(trades_loss(s, s, torch.zeros(1, 2, 2, dtype=torch.long), None, DistillationConfig(), 6.0).robust)
        0.0
    """
    clean = DistillationLoss(distill)(clean_logits, labels, teacher_logits)
    robust = self_kl(clean_logits, adv_logits, labels)
    return RobustTerms(clean + beta * robust, clean, robust)


class RobustDistillationLoss:
    """The configured robust loss (``RobustDistillConfig.loss``) and the Kornia-view term."""

    def __init__(self, config: RobustDistillConfig, distill: DistillationConfig = DistillationConfig()):
        if config.loss == "none":
            raise ValueError("loss: RobustDistillationLoss needs a robust loss (ard, rslad, trades), got 'none'")
        self.config = config
        self.distill = distill

    def __call__(self, clean_logits: torch.Tensor, adv_logits: torch.Tensor, labels: torch.Tensor,
                 teacher_logits: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, float]]:
        """The total loss and its parts ``{"clean_loss", "robust_loss"}`` as floats.

        Shape:
            clean_logits, adv_logits (B, K, h, w), labels (B, H, W) int64, teacher_logits (B, K, h', w') or None
        """
        cfg = self.config
        if cfg.loss == "ard":
            terms = ard_loss(clean_logits, adv_logits, labels, teacher_logits, self.distill, cfg.mix, cfg.temperature)
        elif cfg.loss == "rslad":
            terms = rslad_loss(clean_logits, adv_logits, labels, teacher_logits, cfg.mix, cfg.temperature)
        else:
            terms = trades_loss(clean_logits, adv_logits, labels, teacher_logits, self.distill, cfg.beta)
        return terms.total, {"clean_loss": float(terms.clean.detach()), "robust_loss": float(terms.robust.detach())}

    def corrupt(self, logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor | None,
                aligned: torch.Tensor) -> torch.Tensor:
        """The loss on Kornia views (unweighted: the learner applies ``corrupt_weight``): the
        distillation mix ``alpha * hard + (1 - alpha) * soft``, the hard labels being the ones
        carried with the view and the soft term taken on the pixel-aligned views only (the
        teacher's logits of the clean frame apply to those alone); the hard term alone when
        no view of the batch is aligned or there are no teacher logits.

        Shape:
            logits (B, K, h, w), labels (B, H, W) int64, teacher_logits (B, K, h', w') or None, aligned (B,) bool -> scalar

        Example:
            >>> loss = RobustDistillationLoss(RobustDistillConfig(loss="ard"))
            >>> s = torch.zeros(2, 2, 1, 1)
            >>> y = torch.tensor([[[0]], [[1]]])
            >>> round(float(loss.corrupt(s, y, None, torch.tensor([True, False]))), 4)
            0.6931
        """
        alpha = self.distill.alpha
        hard = hard_label_loss(logits, labels, class_balance=self.distill.class_balance)
        if teacher_logits is None or alpha >= 1.0 or not bool(aligned.any()):
            return hard
        soft = soft_label_loss(logits[aligned], teacher_logits[aligned], self.distill.temperature,
                               labels[aligned] != IGNORE_INDEX)
        return alpha * hard + (1.0 - alpha) * soft
