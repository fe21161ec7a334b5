"""Named intermediate layers ("taps") of the segmentation nets, for feature distillation.

A teacher that ships an intermediate feature map and a student matched to it through an
adapter (:mod:`learners.online`) name the same layer: the decoder's output before the
classifier, or one of the four encoder stages. This module is torch-free (the configs check
names and strides against it in any process); the nets implement the taps
(:meth:`perception.nets.SegNet.tap`, :meth:`perception.student_nets.FastSegNet.tap`).

Example:
    >>> TAP_STRIDES["decoder"], TAP_STRIDES["stage2"]
    (2, 8)
    >>> check_tap("decoder", 8)
    >>> check_tap("stage4", 8, setting="distill")  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    ValueError: distill.feature_stride=8 is finer than distill.feature_layer=stage4's own stride 32: give a multiple of 32
"""
from __future__ import annotations

# layer -> its stride in a perception.nets.SegNet (the teacher's net; FastSegNet's decoder ends at 4)
TAP_STRIDES: dict[str, int] = {"decoder": 2, "stage1": 4, "stage2": 8, "stage3": 16, "stage4": 32}
FEATURE_LAYERS: tuple[str, ...] = tuple(TAP_STRIDES)


def check_tap(layer: str, stride: int, setting: str = "") -> None:
    """Refuse an unknown layer, or a shipping stride that is not a whole multiple of the layer's
    own stride (a feature map is only ever average-pooled, never upsampled, before it ships).
    ``setting``: the config section named in the message (``distill``)."""
    prefix = f"{setting}." if setting else ""
    if layer not in TAP_STRIDES:
        raise ValueError(f"{prefix}feature_layer: unknown layer {layer!r} (choose {', '.join(FEATURE_LAYERS)})")
    if stride < 1 or stride & (stride - 1):
        raise ValueError(f"{prefix}feature_stride must be a power of two (2, 4, 8, ...), got {stride}")
    own = TAP_STRIDES[layer]
    if stride < own:
        raise ValueError(f"{prefix}feature_stride={stride} is finer than {prefix}feature_layer={layer}'s own stride {own}: "
                         f"give a multiple of {own}")
    if stride % own:
        raise ValueError(f"{prefix}feature_stride={stride} must be a multiple of {prefix}feature_layer={layer}'s own "
                         f"stride {own}")
