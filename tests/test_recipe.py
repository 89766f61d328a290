"""`edgekd run RECIPE.yaml`: validation that names field and line, the dry run, a real run and a rerun
that reuses every finished stage, and the shipped demo recipes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekd.cli import cli
from edgekd.demo import TARGETS, demo_recipe
from edgekd.errors import UserError
from edgekd.recipes import shipped
from edgekd.recipes.load import load_recipe
from edgekd.recipes.runner import run_recipe
from edgekd.store import STORE_NAME, Store

GOOD = """\
name: tiny
data: fashion-mnist
teacher:
  arch: cnn-xs
  epochs: 1
students:
  archs: ["cnn(width=4,depth=1)", "cnn(width=6,depth=1)"]
distill:
  method: kd
targets: [cpu-ort-fp32]
budget: 100 x teacher p50
training:
  epochs: 1
  seed: 0
timing: quick
outputs:
  workdir: WORKDIR
  reports: [html, md]
"""


def write(tmp_path: Path, text: str, data: str = "fashion-mnist") -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text.replace("WORKDIR", str(tmp_path / "run")).replace("fashion-mnist", data))
    return path


def error_of(path: Path) -> str:
    with pytest.raises(UserError) as err:
        load_recipe(path)
    return str(err.value)


@pytest.mark.parametrize(
    ("old", "new", "line", "needles"),
    [
        ("  epochs: 1\nstudents", "  epoch: 1\nstudents", 5, ["teacher.epoch: unknown field"]),
        ("  epochs: 1\n  seed", "  epochs: two\n  seed", 13, ["training.epochs:", "integer"]),
        ("  archs: [", "  space: foo\n  archs: [", 7, ["students.space: unknown search space 'foo'; known: demo"]),
        ("[cpu-ort-fp32]", "[cpu-ort-fp32, tpu-x]", 10, ["targets.1: unknown target 'tpu-x'; known:", "cpu-ort-fp32"]),
        ("method: kd", "method: nope", 9, ["distill.method: unknown distillation method 'nope'; known:", "kd"]),
        ("100 x teacher p50", "half", 11, ["budget: budget 'half' is neither a number of ms nor a rule"]),
        ("100 x teacher p50", "0", 11, ["budget: the latency budget must be a positive number"]),
        ("  arch: cnn-xs", "  arch: vgg16", 4, ["teacher.arch: unknown model 'vgg16'"]),
    ],
)
def test_a_bad_field_is_named_with_its_line(tmp_path: Path, old: str, new: str, line: int, needles: list[str]) -> None:
    assert GOOD.count(old) == 1
    path = write(tmp_path, GOOD.replace(old, new))
    message = error_of(path)
    assert message.startswith(f"recipe {path}, line {line}: "), message
    assert "\n" not in message
    for needle in needles:
        assert needle in message


def test_malformed_yaml_and_a_missing_section_say_where(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, GOOD.replace("targets: [cpu-ort-fp32]", "targets: [cpu-ort-fp32")))
    assert ", line 11: malformed YAML" in message and "flow sequence begun on line 10" in message
    message = error_of(write(tmp_path, GOOD.replace("targets: [cpu-ort-fp32]\n", "")))
    assert "targets: required field missing" in message


def test_the_cli_exits_2_with_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("method: kd", "method: nope"))
    result = CliRunner().invoke(cli, ["run", str(path)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output
    assert lines[0].startswith(f"edgekd: error: recipe {path}, line 9: distill.method")


def test_the_shipped_demo_recipes_validate() -> None:
    full, quick = demo_recipe(), demo_recipe(quick=True)
    assert full.targets == quick.targets == TARGETS
    assert (full.teacher.arch, full.teacher.epochs, full.training.epochs, full.training.limit) == ("resnet", 4, 4, None)
    assert (quick.teacher.epochs, quick.training.epochs, quick.training.limit, quick.quick) == (1, 2, 6000, True)
    assert full.students.space == "demo" and full.budget.rule() == "separable near 0.5 x the teacher's p50 here"
    assert full.budget.separable and full.budget_rule.value == quick.budget_rule.value == "upper"


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("separable", "separable near 0.5 x the teacher's p50 here"),
        ("separable near 0.3 x teacher p90", "separable near 0.3 x the teacher's p90 here"),
        ("0.5 x teacher p50", "0.5 x the teacher's p50 here"),
    ],
)
def test_budget_rules_parse(tmp_path: Path, value: str, rule: str) -> None:
    recipe = load_recipe(
        write(tmp_path, GOOD.replace("100 x teacher p50", value).replace("budget:", "budget_rule: p50\nbudget:"))
    )
    assert recipe.budget.rule() == rule and recipe.budget_rule.value == "p50"
    assert "budget 'separable near me': give 'separable' or" in error_of(
        write(tmp_path, GOOD.replace("100 x teacher p50", "separable near me"))
    )
    assert load_recipe(shipped("demo"), {("outputs", "workdir"): ("x", "--workdir")}).outputs.workdir == Path("x")


def test_dry_run_says_what_would_run_and_runs_nothing(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    result = CliRunner().invoke(cli, ["run", str(path), "--dry-run", "--workdir", str(tmp_path / "elsewhere")])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "teacher: train cnn-xs for 1 epoch(s)" in out and "cpu-ort-fp32: build + bench the teacher  [run]" in out
    assert "2 candidate(s) of archs: cnn(width=4,depth=1), cnn(width=6,depth=1)" in out
    assert "100 x the teacher's p50 here" in out and "up to 1 epoch(s) per student" in out
    assert not (tmp_path / "elsewhere").exists() and not (tmp_path / "run").exists()
    assert not (tmp_path / "cache").exists()  # the test's EDGEKD_CACHE: no teacher trained or cached


def count(store: Path) -> tuple[int, int]:
    results = Store(store)
    return len(results.runs()), len(results.benchmarks())


@pytest.mark.usefixtures("fmnist")
def test_a_run_and_a_rerun_that_reuses_every_stage(tmp_path: Path, fmnist: str) -> None:
    path = write(tmp_path, GOOD, data=fmnist)
    first = run_recipe(load_recipe(path))
    assert [s["status"] for s in first["stages"]] == ["ran"] * 4
    (teacher, chosen) = first["rows"]
    assert teacher["name"] == "teacher" and chosen["method"] == "kd, selected"
    selection = first["selections"][0]
    assert selection["budget_source"] == "100 x the teacher's p50 here" and selection["met_budget"]
    assert selection["compute"]["student_epochs"] > 0
    assert {"markdown", "json", "html", "report-md"} <= set(first["files"])
    assert "# edgekd tiny (quick)" in Path(first["files"]["markdown"]).read_text()
    store = tmp_path / "run" / STORE_NAME
    before = count(store)
    kinds = {r["kind"] for r in Store(store).runs()}
    assert {"train", "distill"} <= kinds, kinds
    selection_file = tmp_path / "run" / "select" / "cpu-ort-fp32" / "selection.json"
    stamp = selection_file.stat().st_mtime_ns

    second = run_recipe(load_recipe(path))
    assert second["stages"] == [{"stage": s["stage"], "status": "reused"} for s in first["stages"]]
    assert count(store) == before  # no training run, no benchmark, no selection recorded again
    assert selection_file.stat().st_mtime_ns == stamp
    assert [r["bench"] for r in second["rows"]] == [r["bench"] for r in first["rows"]]
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["selections"][0]["chosen"] == selection["chosen"]
    plan = CliRunner().invoke(cli, ["run", str(path), "--dry-run"]).output
    assert plan.count("[reuse]") == 4 and "[run]" in plan.splitlines()[-1], plan


def test_a_bad_shift_is_named_with_its_line(tmp_path: Path) -> None:
    for bad, needle in [
        ("  corruptions: [blur, fog]", "unknown --shift fog"),
        ("  severity: 7", "--severity must be 1-5 or all"),
        ("  rank_by: snow-3", "--rank-by"),
    ]:
        path = write(tmp_path, GOOD.replace("timing: quick", f"shift:\n{bad}\ntiming: quick"))
        message = error_of(path)
        assert message.startswith(f"recipe {path}, line 15: shift: "), message
        assert needle in message and "\n" not in message, message


@pytest.mark.usefixtures("fmnist")
def test_a_recipe_with_shift_scores_every_artifact_per_domain_and_ranks_by_it(tmp_path: Path, fmnist: str) -> None:
    """`shift:` scores each built artifact on seeded corruptions of the test split (bench --shift) and the
    selection ranks its finished students on a corrupted validation split (select --rank-by)."""
    shift = "shift:\n  corruptions: [blur, invert]\n  severity: 2\n  rank_by: blur-2\ntiming: quick"
    path = write(tmp_path, GOOD.replace("timing: quick", shift), data=fmnist)
    summary = run_recipe(load_recipe(path))
    for row in summary["rows"]:
        scores = row["bench"]["shift"]
        assert sorted(scores) == ["blur-2", "invert-2"] and all(0.0 <= a <= 1.0 for a in scores.values())
        errors = [1 - a for a in scores.values()]
        assert row["bench"]["mean_corruption_error"] == pytest.approx(sum(errors) / 2)
    selection = summary["selections"][0]
    assert selection["rank_by"] == "blur-2"
    finished = [c for c in selection["candidates"] if c["rank_acc"] is not None]
    best = max(c["rank_acc"] for c in finished)  # every candidate meets the budget: the best under shift wins
    assert selection["chosen"]["rank_acc"] == best
    text = Path(summary["files"]["markdown"]).read_text()
    assert "## Accuracy under domain shift" in text and "| clean | blur-2 | invert-2 | mCE |" in text
    assert "Ranked by validation accuracy under blur-2" in text


def test_a_separable_budget_with_no_gap_is_one_the_candidate_can_meet(tmp_path: Path, fmnist: str) -> None:
    """One candidate leaves no gap between intervals; the anchor (0.001 x the teacher's p50) is below
    anything measurable, so the budget is raised to 10% above the candidate's measured upper end."""
    from edgekd import api
    from edgekd.config import TrainConfig
    from edgekd.recipes.budget import budget_stage
    from edgekd.recipes.runner import student_space
    from edgekd.recipes.stages import StageLog

    teacher = tmp_path / "t.pt"
    api.train_teacher("cnn-xs", fmnist, teacher, TrainConfig(epochs=1, limit=200), progress=False)
    text = GOOD.replace('"cnn(width=4,depth=1)", ', "").replace(
        "100 x teacher p50", "separable near 0.001 x teacher p50"
    )
    recipe = load_recipe(write(tmp_path, text, data=fmnist))
    recipe.outputs.workdir.mkdir(parents=True)
    row = {"bench": {"latency_ms": {"p50": 0.05}}}
    budget, source, why = budget_stage(
        StageLog(recipe.outputs.workdir), recipe, teacher, student_space(recipe, teacher), "cpu-ort-fp32", row
    )
    assert why is not None and why["no_gap"] and why["raised"] and why["fastest"] == "cnn(depth=1,width=6)"
    assert budget == pytest.approx(why["candidates"]["cnn(depth=1,width=6)"]["ci_high_ms"] * 1.1)
    assert "no gap of 10% between the candidates' intervals; raised to 10% above the upper end of the fastest" in source
