"""`tollway validate` / `tollway analyze` as users run them: real subprocesses, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner, Result

ROOT = Path(__file__).resolve().parents[2]
SEEDS = ROOT / "tests" / "data" / "seed"
BROKEN = Path(__file__).resolve().parent / "broken"


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tollway", *map(str, args)],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )


def test_cli_validate_seeds_exits_zero_with_the_one_warning() -> None:
    proc = _run("validate", SEEDS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == "16 files, 19 resources: 0 errors, 1 warning"
    assert lines[0].startswith(f"{SEEDS}/14-argo-rollout.yaml:45: Rollout/payment-service: "
                               "spec.strategy.canary.autoPromotionEnabled: warning: ")
    assert len(lines) == 2


def test_cli_validate_broken_file_prints_the_contract_line_and_exits_one() -> None:
    path = BROKEN / "001-vs-weight-120.yaml"
    proc = _run("validate", path)
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[0] == (
        f"{path}:12: VirtualService/myapp: spec.http[0].route[0].weight: error: "
        "must be <= 100, got integer 120")
    assert "Traceback" not in proc.stderr


def test_cli_validate_hostile_files_never_trace(tmp_path: Path) -> None:
    huge = tmp_path / "huge.yaml"
    huge.write_text("# padding\n" * (5 * 1024 * 1024 // 10 + 1))
    names = ["092-yaml-unclosed-bracket.yaml", "097-yaml-billion-laughs.yaml",
             "090-yaml-list-document.yaml", "088-yaml-empty.yaml", "098-yaml-deep-nesting.yaml"]
    proc = _run("validate", *(BROKEN / n for n in names), huge)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stdout.strip().splitlines()
    assert [line.split(":")[0].rsplit("/", 1)[-1] for line in lines[:-1]] == [*names, "huge.yaml"]
    assert "MB per file" in lines[-2]
    assert lines[-1] == "6 files, 0 resources: 5 errors, 1 warning"


def _invoke(*args: str | Path) -> Result:
    from tollway.cli.main import app

    return CliRunner().invoke(app, [str(a) for a in args])


def test_cli_usage_errors_exit_two() -> None:
    none = _run("validate")
    assert none.returncode == 2 and "give at least one" in none.stderr
    missing = _invoke("analyze", "no/such/dir")
    assert missing.exit_code == 2 and "no such file or folder: no/such/dir" in missing.output


def test_cli_analyze_reports_dangling_subset_and_exits_one() -> None:
    path = BROKEN / "100-analyze-dangling-subset.yaml"
    result = _invoke("analyze", path)
    assert result.exit_code == 1
    assert "spec.http[0].route[1].destination.subset: error: subset 'v3'" in result.output


def test_cli_analyze_examples_folder_exits_zero() -> None:
    result = _invoke("analyze", ROOT / "examples" / "canary")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "2 files, 4 resources: 0 errors, 0 warnings"
