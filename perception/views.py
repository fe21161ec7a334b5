"""What the teacher side makes of a labelled frame besides its labels: robustness views.

A :class:`FrameViews` travels with a :class:`~perception.teacher.TeacherOutput` from the
teacher part to the learner (in-process, or between Ray actors), so it holds plain numpy
arrays and JSON-safe recipes only. The views themselves are made by
:mod:`perception.attacks` (gradient attacks) and :mod:`perception.corruptions` (Kornia
presets, worst-of-k); :mod:`stream.parts` decides which frames get them.

:class:`ViewConfig` (the run's ``[adversarial]`` section) says which frames get views, how
they are made and whom the gradient attacks aim at; it is torch-free, like every config.

Example:
    >>> import numpy as np
    >>> ViewConfig(enabled=True, eps=4 / 255).attack_settings()["eps"] == 4 / 255
    True
    >>> parse_eps_list("2/255, 8/255")
    (0.00784313725490196, 0.03137254901960784)
    >>> views = FrameViews(adversarial=np.zeros((4, 6, 3), np.uint8), recipe={"attack": "pgd"})
    >>> views.adversarial.shape, views.corrupted is None, views.nbytes
    ((4, 6, 3), True, 72)
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

TARGETS = ("student", "teacher")
# The Kornia presets' names (perception.corruptions makes them); here, free of torch, so that a
# config naming them is checked in any process.
PRESETS: tuple[str, ...] = (
    "rain", "snow", "plasma_shadow", "motion_blur", "gaussian_noise", "jpeg", "brightness", "contrast",
    "gamma", "planckian_jitter", "linear_illumination", "gaussian_illumination", "shake",
)
GEOMETRIC: frozenset[str] = frozenset({"shake"})  # presets that move pixels (the labels move with them)
ATTACK_KINDS, ATTACK_NORMS, ATTACK_LOSSES = ("fgsm", "pgd"), ("linf", "l2"), ("ce", "segpgd")


def check_presets(names: str | Sequence[str] | None, setting: str = "presets") -> tuple[str, ...]:
    """The preset names asked for, checked: a tuple/list or a comma-separated string; ``"all"``
    is every preset; empty (or None) gives ``()``. Duplicates are dropped, order kept.

    Example:
        >>> check_presets("all") == PRESETS, check_presets(""), check_presets(["snow", "rain"])
        (True, (), ('snow', 'rain'))
        >>> check_presets("rain,fog", "robust.presets")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ValueError: robust.presets: unknown preset 'fog' (choose from: rain, snow, ...)
    """
    if names is None:
        return ()
    if isinstance(names, str):
        items = [part.strip() for part in names.split(",")]
        if items == ["all"]:
            return PRESETS
    elif isinstance(names, (list, tuple)):
        items = list(names)
    else:
        raise ValueError(f"{setting}: expected a list of preset names or a comma-separated string, got {type(names).__name__}")
    out: list[str] = []
    for item in items:
        if item == "":
            continue
        if not isinstance(item, str) or item not in PRESETS:
            raise ValueError(f"{setting}: unknown preset {item!r} (choose from: {', '.join(PRESETS)})")
        if item not in out:
            out.append(item)
    return tuple(out)


def parse_eps(text: str, setting: str = "eps") -> float:
    """An attack radius written as a number (``0.03``) or a fraction of the 8-bit scale
    (``4/255``), checked to lie in [0, 1].

    Example:
        >>> parse_eps("4/255") == 4 / 255, parse_eps("0.5")
        (True, 0.5)
        >>> parse_eps("2", "evaluator.robust_eps")
        Traceback (most recent call last):
        ...
        ValueError: evaluator.robust_eps: eps must be in [0, 1], got 2.0 (from '2')
    """
    raw = str(text).strip()
    top, slash, bottom = raw.partition("/")
    try:
        value = float(top) / float(bottom) if slash else float(raw)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"{setting}: expected a number or N/255, got {raw!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{setting}: eps must be in [0, 1], got {value} (from {raw!r})")
    return value


def parse_eps_list(text: str, setting: str = "eps") -> tuple[float, ...]:
    """Comma-separated radii (see :func:`parse_eps`); empty -> ()."""
    return tuple(parse_eps(item, setting) for item in str(text).split(",") if item.strip())


def eps_name(eps: float) -> str:
    """How a radius is named in summaries: ``4/255`` when it is a whole number of 8-bit steps.

    Example:
        >>> eps_name(4 / 255), eps_name(0.05)
        ('4/255', '0.05')
    """
    steps = eps * 255.0
    return f"{round(steps)}/255" if abs(steps - round(steps)) < 1e-6 else f"{eps:g}"


def frame_draw(seed: int, index: int, salt: str) -> float:
    """A uniform number in [0, 1) fixed by (seed, frame index, salt): decisions per frame that
    a retried call or the other runner takes the same way.

    Example:
        >>> frame_draw(0, 5, "views") == frame_draw(0, 5, "views") != frame_draw(0, 6, "views")
        True
    """
    digest = hashlib.blake2b(f"{seed}:{index}:{salt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2.0**64


def frame_seed(seed: int, index: int, salt: str) -> int:
    """A 31-bit seed fixed by (run seed, frame index, salt) (:func:`frame_draw` scaled).

    Example:
        >>> 0 <= frame_seed(0, 5, "attack") < 2**31
        True
    """
    return int(frame_draw(seed, index, salt) * 2**31)


@dataclass(frozen=True)
class ViewConfig:
    """The teacher side's robustness views (the run's ``[adversarial]`` section).

    The teacher part makes, for the frames it labels, a gradient-attack view and a worst-of-k
    Kornia view. Gradient attacks aim at the teacher part's copy of the student (synced from
    the learner every ``sync_every`` learning steps) or at the teacher itself.
    """

    enabled: bool = False  # make views at all
    fraction: float = 1.0  # share of the teacher-labelled frames that get views (a fixed draw per frame)
    target: str = "student"  # whom the gradient attacks aim at: student (the synced copy) | teacher
    fallback: bool = False  # target=teacher with a teacher that has no gradients: aim at the student instead
    # (with a warning) rather than refusing the run
    sync_every: int = 24  # learning steps between two syncs of the student copy
    kind: str = "pgd"  # fgsm | pgd
    norm: str = "linf"  # linf | l2 (l2: eps is the root-mean-square change per pixel value)
    eps: float = 4 / 255  # attack radius, in [0, 1] (the radius the stream's robust figure is quoted at)
    steps: int = 3  # pgd iterations
    step_size: float = 0.0  # 0 = eps / 4
    loss: str = "segpgd"  # ce | segpgd
    presets: str = "all"  # Kornia presets the worst-of-k view is drawn from (perception.corruptions.PRESETS)
    worst_k: int = 4  # Kornia views sampled per frame; the one that hurts the student most is kept
    param_steps: int = 2  # signed-gradient steps on a differentiable preset's parameters (0 = none)

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"target: unknown attack target {self.target!r} (choose student or teacher)")
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"fraction must be in [0, 1], got {self.fraction}")
        if not 0.0 <= self.eps <= 1.0:
            raise ValueError(f"eps must be in [0, 1], got {self.eps}")
        if self.sync_every < 1:
            raise ValueError(f"sync_every must be >= 1, got {self.sync_every}")
        if self.worst_k < 1:
            raise ValueError(f"worst_k must be >= 1, got {self.worst_k}")
        if self.param_steps < 0:
            raise ValueError(f"param_steps must be >= 0, got {self.param_steps}")
        for name, value, choices in (("kind", self.kind, ATTACK_KINDS), ("norm", self.norm, ATTACK_NORMS),
                                     ("loss", self.loss, ATTACK_LOSSES)):
            if value not in choices:
                raise ValueError(f"{name}: expected one of {', '.join(choices)}, got {value!r}")
        if self.steps < 1 or self.step_size < 0:
            raise ValueError(f"steps must be >= 1 and step_size >= 0, got {self.steps} and {self.step_size}")
        check_presets(self.presets, "presets")

    def attack_settings(self) -> dict[str, Any]:
        """The gradient attack's settings (perception.attacks.AttackConfig's fields)."""
        return {"kind": self.kind, "norm": self.norm, "eps": self.eps, "steps": self.steps,
                "step_size": self.step_size, "restarts": 1, "random_start": True, "loss": self.loss}

    def attack_config(self) -> Any:
        from perception.attacks import AttackConfig

        return AttackConfig(**self.attack_settings())

    def preset_names(self) -> tuple[str, ...]:
        return check_presets(self.presets, "presets")


@dataclass(frozen=True)
class FrameViews:
    """Views of one frame, each the frame's size.

    Attributes:
        adversarial: (H, W, 3) uint8, the frame under a gradient attack (or None).
        corrupted: (H, W, 3) uint8, the worst-of-k Kornia view (or None).
        corrupted_labels: (H, W) uint8, the teacher's labels carried to the Kornia view
            (moved with it by a geometric preset; 255 where nothing maps), or None.
        corrupted_aligned: whether the Kornia view is pixel-aligned with the frame (a
            photometric preset), so that the teacher's soft labels of the frame apply to it.
        recipe: how the views were made, JSON-safe: the attack's settings and target, the
            preset's name, seed and sampled parameters (replayable).
        ms: milliseconds spent making them.
    """

    adversarial: np.ndarray | None = None
    corrupted: np.ndarray | None = None
    corrupted_labels: np.ndarray | None = None
    corrupted_aligned: bool = True
    recipe: dict[str, Any] = field(default_factory=dict)
    ms: float = 0.0

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays (what a transfer of the views costs)."""
        arrays = (self.adversarial, self.corrupted, self.corrupted_labels)
        return int(sum(a.nbytes for a in arrays if a is not None))
