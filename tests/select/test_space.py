"""Search spaces: YAML -> grid -> candidates with parameter and FLOP counts; clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekd.errors import UserError
from edgekd.models import parse_arch
from edgekd.select import load_space
from edgekd.select.space import SPACES_DIR, SearchSpace


def write(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_short_form_expands_every_family_width_depth_and_resolution(tmp_path: Path) -> None:
    path = write(tmp_path, "family: [cnn, resnet]\nwidth: [2, 4]\ndepth: [1, 2]\nimage_size: [8, 12]\n")
    space = load_space(path)
    candidates = space.candidates()
    assert space.name == "space"
    assert len(candidates) == 2 * 2 * 2 * 2
    assert {c.spec.family for c in candidates} == {"cnn", "resnet"}
    assert {c.spec.image_size for c in candidates} == {8, 12}
    assert len({c.key for c in candidates}) == len(candidates)


def test_long_form_gives_each_family_its_own_grid(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
families:
  - {family: cnn, width: [2, 4, 6], depth: 1}
  - {family: mobilenet, width: [0.25], depth: [1, 2], expand: [2, 4]}
image_size: [8]
""",
    )
    candidates = load_space(path).candidates()
    assert [c.arch for c in candidates[:3]] == ["cnn(depth=1,width=2)", "cnn(depth=1,width=4)", "cnn(depth=1,width=6)"]
    assert len(candidates) == 3 + 4
    assert "mobilenet(depth=2,expand=4,width=0.25)" in {c.arch for c in candidates}


def test_params_and_flops_match_a_hand_count(tmp_path: Path) -> None:
    # cnn(width=2, depth=1) on 1 x 8 x 8: stem conv 1->2 @8x8, conv 2->2 @8x8, pool, conv 2->4 @4x4, pool,
    # conv 4->8 @2x2, global pool, linear 8->10. Convs have no bias; BN has 2 parameters per channel.
    (candidate,) = load_space(write(tmp_path, "family: cnn\nwidth: 2\ndepth: 1\nimage_size: [8]\n")).candidates()
    conv_weights = 2 * 1 * 9 + 2 * 2 * 9 + 4 * 2 * 9 + 8 * 4 * 9
    assert candidate.params == conv_weights + 2 * (2 + 2 + 4 + 8) + (8 * 10 + 10)
    macs = 2 * 8 * 8 * (1 * 9) + 2 * 8 * 8 * (2 * 9) + 4 * 4 * 4 * (2 * 9) + 8 * 2 * 2 * (4 * 9) + 8 * 10
    assert candidate.flops == 2 * macs  # FlopCounterMode: a multiply-add is 2 FLOPs


def test_arch_strings_parse_back_to_the_candidate_spec(tmp_path: Path) -> None:
    space = load_space(write(tmp_path, "family: mobilenet\nwidth: [0.25, 0.5]\ndepth: 1\nimage_size: [12]\n"))
    for candidate in space.candidates():
        assert parse_arch(candidate.arch, image_size=candidate.spec.image_size) == candidate.spec


def test_keys_are_stable_across_loads(tmp_path: Path) -> None:
    path = write(tmp_path, "family: cnn\nwidth: [2, 3]\nimage_size: [8]\n")
    assert [c.key for c in load_space(path).candidates()] == [c.key for c in load_space(path).candidates()]


def test_limits_filter_candidates(tmp_path: Path) -> None:
    path = write(tmp_path, "family: cnn\nwidth: [2, 4, 8]\ndepth: 1\nimage_size: [8]\nmax_params: 2000\n")
    candidates = load_space(path).candidates()
    assert [c.arch for c in candidates] == ["cnn(depth=1,width=2)", "cnn(depth=1,width=4)"]
    assert all(c.params <= 2000 for c in candidates)


def test_built_in_small_space_loads_by_name() -> None:
    space = load_space("small")
    assert space == load_space(SPACES_DIR / "small.yaml")
    assert len(space.specs()) == 34  # no model built: specs() only expands the grid


def test_limits_that_exclude_everything_name_the_limit(tmp_path: Path) -> None:
    path = write(tmp_path, "family: cnn\nwidth: [2]\nimage_size: [8]\nmax_params: 10\n")
    with pytest.raises(UserError, match=r"no candidate within its limits \(1 grid points, max_params=10\)"):
        load_space(path).candidates()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "family: transformer\nwidth: [8]\n",
            "unknown family 'transformer'; known: cnn, efficientnet, mobilenet, mobilenetv3, resnet",
        ),
        ("family: cnn\nheight: [8]\n", "family cnn has no parameter height; known: width, depth"),
        ("family: cnn\nwidth: []\n", "width lists no values"),
        ("families: []\n", "names no family"),
        ("family: cnn\nimage_size: []\n", "image_size must list at least one"),
        ("family: cnn\nfamilies: []\n", "either `family` with a grid, or `families`"),
        ("family: cnn\nwidth: [8\n", "malformed YAML"),
        ("- cnn\n", "must hold a YAML mapping"),
        ("family: cnn\nmax_params: -1\n", "max_params"),
    ],
)
def test_bad_spaces_fail_with_one_clear_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        load_space(write(tmp_path, text))
    assert "\n" not in str(err.value)


def test_missing_file_lists_the_built_in_spaces(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="search space not found: .*nope.yaml; .*built-in space \\(.*small"):
        load_space(tmp_path / "nope.yaml")


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
def test_unbuildable_candidate_is_a_user_error() -> None:
    space = SearchSpace.model_validate({"family": "cnn", "width": [0], "image_size": [8]})
    with pytest.raises(UserError, match=r"cnn\(width=0\) at 8px cannot be built"):
        space.candidates()
