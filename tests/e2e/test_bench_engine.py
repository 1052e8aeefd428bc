"""`hearth bench`'s engine figures run end to end on small inputs (their values are judged by the
benchmark, not here), and a figure that cannot be measured is reported as failed while the others
still are."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from app.bench.engine import bench_builds, bench_decode, bench_restart
from tests.e2e.hearth_cli import HEARTH, REPO, hearth_env

pytestmark = [pytest.mark.model, pytest.mark.slow]


def test_decode_ratio_compares_the_worker_with_llama_cpp_python_alone(smollm2_path: Path, tmp_path: Path) -> None:
    figure = bench_decode(smollm2_path, tmp_path, rounds=1)
    assert (figure.name, figure.target, figure.better) == ("decode_ratio", 0.97, "higher")
    assert figure.value > 0 and figure.detail["worker_tok_s"] > 0 and figure.detail["bare_process_tok_s"] > 0


def test_restart_is_timed_against_the_models_load(smollm2_path: Path) -> None:
    figure = bench_restart(smollm2_path, runs=1)
    assert figure.name == "restart_first_token_s" and figure.value > 0
    assert figure.target == pytest.approx(figure.detail["load_s"] + 0.5)


def test_a_build_that_cannot_run_is_a_failed_figure_not_a_failed_bench(
    smollm2_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    this_build = Path(__import__("llama_cpp").__file__).parent / "lib"
    monkeypatch.setenv("HEARTH_BENCH_ENGINES", f"same={this_build},broken={tmp_path / 'no-such-build'}")
    same, broken = bench_builds(smollm2_path, tmp_path, rounds=1)
    assert same.name == "build_speed_ratio[same]" and same.value > 0 and not same.error
    assert broken.name == "build_speed_ratio[broken]" and not broken.ok and "died" in broken.error
    assert "llama" in broken.error, "the error does not say what the build's process said"


def test_hearth_bench_prints_the_figures_it_could_measure_and_the_failures(
    home_with_model: Path, tmp_path: Path
) -> None:
    env = {**hearth_env(home_with_model), "HEARTH_BENCH_ENGINES": f"broken={tmp_path / 'no-such-build'}"}
    result = subprocess.run(
        [*HEARTH, "bench", "--json", "--only", "build_speed_ratio", "--only", "app_rss_mb"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    figures = {f["name"]: f for f in json.loads(result.stdout)["figures"]}
    assert figures["build_speed_ratio[broken]"]["ok"] is False and figures["build_speed_ratio[broken]"]["error"]
    assert figures["build_speed_ratio[broken]"]["value"] is None
    rss = figures["app_rss_mb"]
    assert rss["error"] == "" and rss["value"] > 0 and rss["detail"]["worker_rss_mb"] > 0
    assert "[1/2] measuring app_rss_mb" in result.stderr and "[2/2] measuring build_speed_ratio" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unknown_figure_is_refused(home_with_model: Path) -> None:
    result = subprocess.run(
        [*HEARTH, "bench", "--only", "nonsense"],
        cwd=REPO,
        env=hearth_env(home_with_model),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and "Unknown figure: nonsense" in result.stderr
