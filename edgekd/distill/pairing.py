"""Layer pairs between a student and a teacher of different layouts.

Information-flow KD pairs points at matching relative depth when the two networks differ
(Passalis et al., CVPR 2020, as restated in PAPERS.md); the last pair is always the final (penultimate)
representation. Pairs are ordered shallow to deep; a pair is (student layer, teacher layer).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from edgekd.distill.kernels import flatten
from edgekd.distill.taps import Taps, check_layers
from edgekd.errors import UserError

LayerPair = tuple[str, str]
LOGITS = "logits"  # always in the taps; never a module name to hook


def depth_indices(n_layers: int, n: int) -> list[int]:
    """Indices of n of n_layers ordered layers, evenly spread in relative depth, ending at the last.

    Layer i sits at relative depth (i + 1) / n_layers; pick k takes the layer nearest to depth k / n
    (ties go deeper), k = 1..n. With n <= n_layers the picks are distinct.
    """
    if not 1 <= n <= n_layers:
        raise UserError(f"cannot choose {n} layer pairs from {n_layers} candidate layers")
    # round-half-up of k * n_layers / n, in integers: (2 k L + n) // (2 n)
    return [(2 * k * n_layers + n) // (2 * n) - 1 for k in range(1, n + 1)]


def pair_by_depth(student_layers: Sequence[str], teacher_layers: Sequence[str], n: int) -> list[LayerPair]:
    """n pairs at matching relative depth from each model's ordered candidate layers (shallow to deep)."""
    if n > min(len(student_layers), len(teacher_layers)):
        raise UserError(
            f"cannot choose {n} layer pairs: the student offers {len(student_layers)} candidate layers, "
            f"the teacher {len(teacher_layers)}"
        )
    s_idx = depth_indices(len(student_layers), n)
    t_idx = depth_indices(len(teacher_layers), n)
    return [(student_layers[i], teacher_layers[j]) for i, j in zip(s_idx, t_idx, strict=True)]


def check_pairs(student: nn.Module, teacher: nn.Module, pairs: Sequence[LayerPair]) -> None:
    """Fail early, listing the valid names, when a pair names a layer a model lacks."""
    pairs = as_pairs(pairs)
    check_layers(student, [s for s, _ in pairs if s != LOGITS], "student")
    check_layers(teacher, [t for _, t in pairs if t != LOGITS], "teacher")


def resolve_pairs(
    student: nn.Module,
    teacher: nn.Module,
    student_candidates: Sequence[str],
    teacher_candidates: Sequence[str],
    n: int,
    explicit: Sequence[LayerPair] | None = None,
) -> list[LayerPair]:
    """Explicit pairs when given, else n automatic pairs at matching depth; both checked on the models."""
    pairs = as_pairs(explicit) if explicit else pair_by_depth(student_candidates, teacher_candidates, n)
    check_pairs(student, teacher, pairs)
    return list(pairs)


def as_pairs(pairs: Sequence[Sequence[str]]) -> tuple[LayerPair, ...]:
    """Pairs as read from a config (lists or tuples) -> a non-empty tuple of (student, teacher) names."""
    out = tuple(tuple(p) for p in pairs)
    if not out or any(len(p) != 2 or not all(isinstance(n, str) and n for n in p) for p in out):
        raise UserError(f"layer pairs are non-empty (student layer, teacher layer) names; got {pairs!r}")
    return tuple((p[0], p[1]) for p in out)


def layers_of(pairs: Sequence[LayerPair], side: int) -> tuple[str, ...]:
    """The distinct layer names to hook on one side (0 student, 1 teacher), in order, without logits."""
    return tuple(dict.fromkeys(p[side] for p in pairs if p[side] != LOGITS))


def pair_features(s: Taps, t: Taps, pair: LayerPair) -> tuple[Tensor, Tensor]:
    """(student, detached teacher) features of one pair, each flattened to B x D."""
    for taps, name, role in ((s, pair[0], "student"), (t, pair[1], "teacher")):
        if name not in taps:
            raise KeyError(f"{role} taps lack {name!r}; present: {', '.join(taps)}")
    return flatten(s[pair[0]]), flatten(t[pair[1]].detach())
