"""Any user model: candidate layers, the penultimate tap and every method's distillation on `module:factory`
models of shapes the zoo does not have, without naming a layer. The factories live in this module,
imported by its own name (`test_user_models:mixer`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from edgekd.config import TrainConfig
from edgekd.distill.auxiliary import auxiliary_spec
from edgekd.distill.blocks import penultimate
from edgekd.distill.methods import candidate_layers
from edgekd.distill.run import distill, train_teacher
from edgekd.distill.taps import tapped
from edgekd.distill.task import DistillConfig
from edgekd.errors import UserError
from edgekd.models import build_model, load_model, parse_arch

SHAPE = (1, 28, 28)
CFG = TrainConfig(epochs=1, batch_size=64, limit=160, seed=0, device="cpu")


class MixerBlock(nn.Module):
    """MLP-Mixer: an MLP across tokens, then one across channels, each residual."""

    def __init__(self, tokens: int, dim: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.tokens = nn.Sequential(nn.Linear(tokens, 2 * tokens), nn.GELU(), nn.Linear(2 * tokens, tokens))
        self.channels = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.tokens(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        out: Tensor = x + self.channels(self.norm2(x))
        return out


class Mixer(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, width: int) -> None:
        super().__init__()
        self.patch = nn.Conv2d(in_channels, width, 7, stride=7)  # 4 x 4 patches
        self.blocks = nn.Sequential(MixerBlock(16, width), MixerBlock(16, width))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm(self.blocks(self.patch(x).flatten(2).transpose(1, 2)))
        out: Tensor = self.head(x.mean(dim=1))
        return out


class SEBlock(nn.Module):
    """Grouped 3x3 convolution with squeeze-and-excitation."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, groups=4), nn.BatchNorm2d(cout), nn.ReLU())
        self.se = nn.Sequential(nn.Linear(cout, cout // 4), nn.ReLU(), nn.Linear(cout // 4, cout), nn.Sigmoid())

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        return x * self.se(x.mean((2, 3)))[:, :, None, None]


class SENet(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, width: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1), nn.BatchNorm2d(width), nn.ReLU())
        self.blocks = nn.Sequential(
            SEBlock(width, width, 2), SEBlock(width, 2 * width, 2), SEBlock(2 * width, 2 * width, 1)
        )
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.fc(torch.flatten(self.gap(self.blocks(self.stem(x))), 1))
        return out


class HeadFirst(nn.Module):
    """The head is registered first and an unused auxiliary head last."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.head = nn.Linear(32, num_classes)
        convs = [nn.Conv2d(in_channels, 16, 3, 2, 1), nn.Conv2d(16, 32, 3, 2, 1), nn.Conv2d(32, 32, 3, 1, 1)]
        self.body = nn.Sequential(*(m for conv in convs for m in (conv, nn.ReLU())))
        self.aux = nn.Linear(32, 4)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.head(self.body(x).mean((2, 3)))
        return out


def mixer(in_channels: int = 1, num_classes: int = 10, width: int = 16) -> nn.Module:
    return Mixer(in_channels, num_classes, width)


def se_net(in_channels: int = 1, num_classes: int = 10, width: int = 8) -> nn.Module:
    return SENet(in_channels, num_classes, width)


def sequential(in_channels: int = 1, num_classes: int = 10) -> nn.Module:
    return nn.Sequential(
        *(nn.Conv2d(in_channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2)),
        *(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
        *(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()),
        nn.Linear(32, num_classes),
    )


def head_first(in_channels: int = 1, num_classes: int = 10) -> nn.Module:
    return HeadFirst(in_channels, num_classes)


EXPECTED = {
    "mixer": ["patch", "blocks.0", "blocks.1", "norm", "head:in"],
    "se_net": ["stem.2", "blocks.0", "blocks.1", "blocks.2", "fc:in"],
    "sequential": ["2", "3", "5", "6", "8", "10"],  # conv-BN-ReLU is one point; `10` (Flatten) feeds the head
    "head_first": ["body.1", "body.3", "body.5", "head:in"],
}
LOGITS_LINEAR = {"mixer": "head", "se_net": "fc", "sequential": "11", "head_first": "head"}


def arch(name: str) -> str:
    return f"{__name__}:{name}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_candidates_follow_the_forward_pass_and_end_at_the_penultimate(name: str) -> None:
    model = build_model(parse_arch(arch(name)))
    assert candidate_layers(model, SHAPE) == EXPECTED[name]
    assert candidate_layers(model, SHAPE, pooled=False) == EXPECTED[name][:-1]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_penultimate_is_the_input_of_the_logits_linear(name: str) -> None:
    model = build_model(parse_arch(arch(name))).eval()
    tap = penultimate(model, SHAPE)
    assert tap == EXPECTED[name][-1]
    seen: list[Tensor] = []
    linear = dict(model.named_modules())[LOGITS_LINEAR[name]]
    handle = linear.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    with tapped(model, [tap]) as taps, torch.no_grad():
        model(torch.rand(3, *SHAPE))
    handle.remove()
    assert torch.equal(taps[tap], seen[0])


@pytest.mark.parametrize("family", ["cnn-xs", "resnet", "mobilenet-s", "vit-s"])
def test_penultimate_of_built_in_models_is_pool(family: str) -> None:
    assert penultimate(build_model(parse_arch(family)), SHAPE) == "pool"


def test_input_taps_parse_and_check() -> None:
    assert DistillConfig(method="pkt", pairs="head:in:fc:in").pairs == (("head:in", "fc:in"),)
    with pytest.raises(UserError, match="valid layer names: .*':in' appended"):
        with tapped(head_first(), ["nohead:in"]):
            pass


@pytest.fixture(scope="module")
def teacher(fmnist_npz: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user teacher without a `pool` layer (grouped convolutions with squeeze-and-excitation)."""
    out = tmp_path_factory.mktemp("teacher") / "se.pt"
    train_teacher(arch("se_net"), str(fmnist_npz), out, CFG, store=out.with_suffix(".sqlite"), progress=False)
    return out


@pytest.mark.parametrize("method", ["kd", "pkt", "sp", "infoflow"])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_method_distils_a_user_student(
    teacher: Path, fmnist: str, tmp_path: Path, name: str, method: str
) -> None:
    result = distill(teacher, arch(name), fmnist, tmp_path / "s.pt", CFG, DistillConfig(method=method), progress=False)
    meta = load_model(result.checkpoint)[2]
    if method == "kd":
        assert meta["pairs"] is None
    elif method == "sp":
        assert meta["pairs"] == [[EXPECTED[name][-2], "blocks.2"]]
    else:
        assert meta["pairs"][-1] == [EXPECTED[name][-1], "fc:in"]


def test_auxiliary_by_width_and_by_checkpoint(teacher: Path, fmnist: str, tmp_path: Path) -> None:
    task = DistillConfig(method="infoflow", auxiliary_width="width=32")
    assert task.auxiliary == "auto"
    meta = load_model(distill(teacher, arch("mixer"), fmnist, tmp_path / "m.pt", CFG, task, progress=False).checkpoint)[
        2
    ]
    aux_model, aux_spec, aux_meta = load_model(Path(meta["auxiliary"]))
    assert aux_spec.params == {"width": 32} and aux_model.head.in_features == 32
    assert [list(p) for p in aux_meta["distill"]["pairs"]] == [["penultimate", "penultimate"]]

    given = tmp_path / "given.pt"
    train_teacher(arch("sequential"), fmnist, given, CFG, progress=False)
    path_task = DistillConfig(method="infoflow", auxiliary=str(given))
    meta = load_model(
        distill(teacher, arch("sequential"), fmnist, tmp_path / "q.pt", CFG, path_task, progress=False).checkpoint
    )[2]
    assert meta["auxiliary"] == str(given)


def test_a_user_student_without_width_or_checkpoint_names_both_fixes(
    teacher: Path, fmnist: str, tmp_path: Path
) -> None:
    with pytest.raises(UserError, match="--auxiliary-width NAME=VALUE .* or --auxiliary PATH"):
        distill(
            teacher,
            arch("head_first"),
            fmnist,
            tmp_path / "h.pt",
            CFG,
            DistillConfig(method="infoflow", auxiliary="auto"),
            progress=False,
        )
    with pytest.raises(UserError, match="takes no argument 'depth'"):
        auxiliary_spec(parse_arch(arch("mixer")), "depth=3")
    with pytest.raises(UserError, match="not both"):
        DistillConfig(method="infoflow", auxiliary="a.pt", auxiliary_width="width=32")
