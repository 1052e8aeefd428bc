"""`hearth --smoke-test` from the source tree: the real window answers one prompt, or says clearly why not.

The bundle tests (test_bundle.py) run the same flag on the built app.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.e2e.hearth_cli import REPO, hearth_env, write_settings


def smoke_test(home: Path) -> subprocess.CompletedProcess[str]:
    env = {**hearth_env(home), "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.run(
        [sys.executable, "-m", "app", "--smoke-test"], cwd=REPO, env=env, capture_output=True, text=True, timeout=180
    )


def test_smoke_test_reports_the_window_and_the_reply(home_with_model: Path) -> None:
    write_settings(home_with_model, generation={"temperature": 0.0, "seed": 1, "max_tokens": 16})
    result = smoke_test(home_with_model)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    [line] = result.stdout.splitlines()
    report = json.loads(line)
    assert report["ok"] is True and report["reply"].strip(), report
    assert 0 < report["window_s"] <= report["model_s"] <= report["reply_s"], report
    assert report["model"] == "smollm2-135m-instruct" and report["backend"] == "CPU"


def test_smoke_test_fails_with_a_message_when_no_model_loads(hearth_home: Path) -> None:
    write_settings(hearth_home, engine="remote", remote_url="http://127.0.0.1:9/v1")  # nothing listens there
    result = smoke_test(hearth_home)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert any(line.startswith("error: smoke test failed:") for line in result.stderr.splitlines()), result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["ok"] is False and report["error"] and report["window_s"] > 0, report
