"""`hearth bench`'s network figures run end to end on small inputs (their values are not judged here:
speed is what the benchmark prints, not what a test asserts)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

from app.bench.network import bench_download, bench_remote_decode
from tests.conftest import require


def test_download_ratio_compares_a_real_fetch_with_curl(tmp_path: Path) -> None:
    require(shutil.which("curl") is not None, "curl is not installed (./dev.sh setup installs it)")
    figure = bench_download(tmp_path, rounds=1, megabytes=4)
    assert (figure.name, figure.better, figure.target) == ("download_ratio", "higher", 0.9)
    assert figure.value > 0 and figure.detail["hearth_mb_s"] > 0 and figure.detail["curl_mb_s"] > 0
    assert figure.detail["size_mb"] == pytest.approx(4 * 2**20 / 1e6)
    assert not list((tmp_path / "models").glob("*")) and not (tmp_path / "served" / "model.bin").exists(), (
        "nothing left behind"
    )


@pytest.mark.slow
def test_remote_decode_ratio_reads_one_server_both_ways(tmp_path: Path, smollm2_path: Path) -> None:
    require(
        importlib.util.find_spec("uvicorn") is not None,
        "llama-cpp-python[server] is not installed (pip install -e '.[test]')",
    )
    figure = bench_remote_decode(smollm2_path, tmp_path, rounds=1, max_tokens=24)
    assert (figure.name, figure.better, figure.target) == ("remote_decode_ratio", "higher", 0.95)
    assert figure.detail["hearth_tok_s"] > 0 and figure.detail["direct_tok_s"] > 0
