from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from edgekd.errors import UserError
from edgekd.models import build_model, load_model, parse_arch, save_checkpoint
from edgekd.models.zoo import PRESETS, count_params


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_build_and_run(name: str) -> None:
    model = build_model(parse_arch(name, num_classes=7))
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 7)
    assert [n for n, _ in model.named_children()][:3] == ["norm", "stem", "stage1"]


def test_families_scale_with_width_and_depth() -> None:
    small = count_params(build_model(parse_arch("cnn(width=8,depth=1)")))
    wide = count_params(build_model(parse_arch("cnn(width=16,depth=1)")))
    deep = count_params(build_model(parse_arch("cnn(width=8,depth=2)")))
    assert small < deep < wide
    mb = build_model(parse_arch("mobilenet(width=0.5,depth=2)", in_channels=3, image_size=32))
    assert mb(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_unknown_names_list_known_ones() -> None:
    with pytest.raises(UserError, match="unknown model 'vgg'.*cnn-s"):
        parse_arch("vgg")
    with pytest.raises(
        UserError, match="unknown model family 'vgg'; known: cnn, efficientnet, mobilenet, mobilenetv3, resnet"
    ):
        parse_arch("vgg(width=2)")
    with pytest.raises(UserError, match="check the parameter names"):
        build_model(parse_arch("cnn(widht=2)"))


def test_user_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mymodels.py").write_text(
        "import torch\n"
        "def tiny(num_classes=10):\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, num_classes))\n"
        "not_callable = 3\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = parse_arch("mymodels:tiny", num_classes=4)
    assert build_model(spec)(torch.rand(2, 1, 28, 28)).shape == (2, 4)
    with pytest.raises(UserError, match="no callable"):
        parse_arch("mymodels:not_callable")
    with pytest.raises(UserError, match="cannot import 'nosuchmodule'"):
        parse_arch("nosuchmodule:f")
    sys.modules.pop("mymodels", None)


def test_checkpoint_round_trip_is_weights_only(tmp_path: Path) -> None:
    spec = parse_arch("cnn-xs")
    model = build_model(spec)
    save_checkpoint(tmp_path / "m.pt", model, spec, {"test_acc": 0.5})
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    assert set(payload) == {"format", "arch", "state_dict", "meta"}
    loaded, spec2, meta = load_model(tmp_path / "m.pt")
    assert spec2 == spec and meta == {"test_acc": 0.5}
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(loaded(x), model.eval()(x))


def test_bad_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="checkpoint not found"):
        load_model(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a readable edgekd checkpoint"):
        load_model(tmp_path / "junk.pt")
    torch.save({"some": 1}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="not an edgekd checkpoint"):
        load_model(tmp_path / "other.pt")
