"""Domains: the data a model trains on drawn from several source domains, and the ones held out.

A domain is named one of three ways:

    clean           the data as it is
    NAME-SEVERITY   a seeded corruption of it (`edgekd.data.shift`: blur-2, contrast-3, noise-3, ...)
    NAME=PATH       a folder or .npz of its own (another camera), with the training data's classes

`--domains clean,contrast-2,blur-2 --hold-out rotate-3,noise-3` trains on the first three and records
the last two as held out (evaluated on the test split, never trained on). Each training image is drawn
into one built-in source domain by a seeded assignment, so an epoch costs what a clean epoch costs; a
user domain adds its own training images. The validation split is drawn the same way (model choice
sees the source domains only); the test split stays clean. The plan is recorded in the split info
(`split.info["domains"]`), so every checkpoint and run record says what it trained on and what it
held out.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace

import numpy as np

from edgekd.data.datasets import Dataset, Split
from edgekd.data.shift import CORRUPTIONS, SEVERITIES, shifted
from edgekd.errors import UserError

CLEAN = "clean"
#: short names accepted beside the corruption names
ALIASES = {"noise": "gaussian_noise"}


@dataclass(frozen=True)
class Domain:
    """One named domain: clean, a corruption at a severity, or a user data spec."""

    name: str
    corruption: str | None = None
    severity: int | None = None
    spec: str | None = None

    def to_json(self) -> dict[str, object]:
        return {k: v for k, v in vars(self).items() if v is not None}


@dataclass(frozen=True)
class DomainPlan:
    """Source domains to train on and held-out domains to evaluate on."""

    sources: tuple[Domain, ...]
    held_out: tuple[Domain, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "sources": [d.name for d in self.sources],
            "held_out": [d.name for d in self.held_out],
            "specs": {d.name: d.spec for d in (*self.sources, *self.held_out) if d.spec},
            "assignment": "each training and validation image in one built-in source domain (seeded)",
        }


def parse_domain(text: str, option: str = "--domains") -> Domain:
    """One domain name: clean, NAME-SEVERITY or NAME=PATH."""
    item = text.strip()
    name, sep, path = item.partition("=")
    if sep:
        if not name.strip() or not path.strip():
            raise UserError(f"{option}: {item!r} must be NAME=PATH (a folder or .npz)")
        return Domain(name.strip(), spec=path.strip())
    if item == CLEAN:
        return Domain(CLEAN)
    base, dash, level = item.rpartition("-")
    corruption = ALIASES.get(base, base)
    if not dash or corruption not in CORRUPTIONS:
        known = ", ".join([*CORRUPTIONS, *ALIASES])
        raise UserError(
            f"{option}: unknown domain {item!r}; give clean, NAME-SEVERITY with NAME one of {known}, or NAME=PATH"
        )
    if not level.isdigit() or int(level) not in SEVERITIES:
        raise UserError(f"{option}: severity of {item!r} must be 1-5")
    return Domain(f"{corruption}-{int(level)}", corruption, int(level))


def parse_plan(domains: str | None, hold_out: str | None) -> DomainPlan | None:
    """`--domains a,b,...` and `--hold-out c,d,...` -> a plan (None when neither is given)."""
    if not domains and not hold_out:
        return None
    sources = tuple(parse_domain(t) for t in (domains or CLEAN).split(",") if t.strip())
    held = tuple(parse_domain(t, "--hold-out") for t in (hold_out or "").split(",") if t.strip())
    names = [d.name for d in sources]
    overlap = sorted(set(names) & {d.name for d in held})
    if overlap:
        raise UserError(
            f"--hold-out {', '.join(overlap)} is also a source domain; a held-out domain is never trained on"
        )
    if len(set(names)) != len(names):
        raise UserError(f"--domains names a domain twice: {', '.join(names)}")
    return DomainPlan(sources, held)


def check_same_classes(reference: tuple[str, ...], domain: Dataset, name: str) -> None:
    """A domain must have the training data's classes: the same count, and the same names unless one side
    has only numbered classes (an .npz without names)."""
    numbered = [tuple(str(i) for i in range(len(c))) for c in (reference, domain.classes)]
    same = len(reference) == len(domain.classes) and (
        reference == domain.classes or reference == numbered[0] or domain.classes == numbered[1]
    )
    if not same:
        raise UserError(
            f"domain {name!r} has classes {_names(domain.classes)} but the training data has {_names(reference)};"
            " give a domain with the same class sub-folders"
        )


def _names(classes: tuple[str, ...]) -> str:
    shown = ", ".join(classes[:6]) + (", ..." if len(classes) > 6 else "")
    return f"({len(classes)}: {shown})"


def _corrupt(data: Dataset, domain: Domain, seed: int) -> Dataset:
    if domain.corruption is None or domain.severity is None:
        return data
    return shifted(data, domain.corruption, domain.severity, seed)


def _mixed(data: Dataset, built_in: list[Domain], seed: int, role: str) -> Dataset:
    """Each image of `data` in one of the built-in domains, by a seeded assignment, order kept."""
    if not built_in or len(data) == 0:
        return data
    rng = np.random.default_rng([seed, zlib.crc32(role.encode())])
    which = rng.permutation(len(data)) % len(built_in)
    x = data.x.copy()
    for i, domain in enumerate(built_in):
        index = np.flatnonzero(which == i)
        if len(index):
            x[index] = _corrupt(data.subset(index), domain, seed).x
    return replace(data, x=x)


def user_domain(domain: Domain, reference: Dataset, role: str) -> Dataset:
    """A user domain's training or held-out split, checked against the reference's classes and shape."""
    from edgekd.data.load import evaluation_split, load_data

    assert domain.spec is not None
    data = load_data(domain.spec, val_fraction=0.0).train if role == "train" else evaluation_split(domain.spec)[0]
    check_same_classes(reference.classes, data, domain.name)
    if data.input_shape != reference.input_shape:
        raise UserError(
            f"domain {domain.name!r} has images of shape {data.input_shape} but the training data has"
            f" {reference.input_shape}; give images of the training data's shape"
        )
    return data


def source_split(split: Split, plan: DomainPlan | None, seed: int) -> Split:
    """`split` with its training and validation images drawn from the plan's source domains."""
    if plan is None:
        return split
    built_in = [d for d in plan.sources if d.spec is None]
    train = _mixed(split.train, built_in, seed, "train")
    extra = [user_domain(d, split.train, "train") for d in plan.sources if d.spec is not None]
    if extra:
        train = Dataset(
            np.concatenate([train.x, *(e.x for e in extra)]),
            np.concatenate([train.y, *(e.y for e in extra)]),
            train.classes,
            train.name,
        )
    val = _mixed(split.val, built_in, seed, "val")
    return Split(train, val, split.test, {**split.info, "domains": plan.to_json(), "n_train": len(train)})


def domain_sets(test: Dataset, domains: tuple[Domain, ...] | list[Domain], seed: int = 0) -> dict[str, Dataset]:
    """Each domain's evaluation set: a corruption of `test`, or a user domain's held-out split."""
    return {d.name: user_domain(d, test, "test") if d.spec is not None else _corrupt(test, d, seed) for d in domains}
