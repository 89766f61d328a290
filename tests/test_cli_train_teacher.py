"""`edgekd train-teacher` trains on the recipe `distill` offers: --augment, --views, --warmup-epochs, --preset."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from edgekd.cli import cli
from edgekd.models import load_model


def test_train_teacher_takes_the_augmented_recipe_and_the_preset(tmp_path: Path, fmnist: str) -> None:
    base = ["train-teacher", "--arch", "cnn-xs", "--data", fmnist, "--limit", "300", "--json", "--out"]
    given = [str(tmp_path / "a.pt"), "--epochs", "1", "--augment", "standard", "--views", "3", "--warmup-epochs", "0.5"]
    result = CliRunner().invoke(cli, [*base, *given])
    assert result.exit_code == 0, result.output
    train = load_model(tmp_path / "a.pt")[2]["train"]
    assert train["augment"]["pad"] == 4 and train["views"] == 3 and train["warmup_epochs"] == 0.5
    # the preset fills what was not given (here all but --epochs); its kd temperature has no use here
    result = CliRunner().invoke(cli, [*base, str(tmp_path / "p.pt"), "--preset", "patient", "--epochs", "1"])
    assert result.exit_code == 0, result.output
    train = load_model(tmp_path / "p.pt")[2]["train"]
    assert train["epochs"] == 1 and train["views"] == 8 and train["warmup_epochs"] == 1.0
    assert train["augment"]["erase"] == 0.25
    # without the options, as before: no augmentation
    result = CliRunner().invoke(cli, [*base, str(tmp_path / "n.pt"), "--epochs", "1"])
    assert result.exit_code == 0, result.output
    assert load_model(tmp_path / "n.pt")[2]["train"]["augment"] == {"pad": 0, "flip": "off", "erase": 0.0}
