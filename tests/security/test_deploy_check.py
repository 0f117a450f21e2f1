"""Production mode passes `manage.py check --deploy` with no warnings, with the environment the
benchmarks deploy with (bench/common.py) and the HTTPS redirect left at its default (on)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.common import production_env

ROOT = Path(__file__).resolve().parents[2]


def check_deploy(data_dir: Path, **overrides: str) -> subprocess.CompletedProcess:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("LLMOPS_", "DATABASE_", "REDIS_"))
    }
    env.update(production_env(), LLMOPS_DATA_DIR=str(data_dir), **overrides)
    del env["LLMOPS_SECURE_SSL_REDIRECT"]  # its production default, not the benchmark's off
    assert env["LLMOPS_DEBUG"] == "false"
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_settings_pass_check_deploy_with_no_warnings(tmp_path, figures):
    result = check_deploy(tmp_path)
    figures.record(
        "T8",
        "manage.py check --deploy --fail-level WARNING, production settings",
        exit_status=result.returncode,
        output=(result.stdout.strip() or result.stderr.strip()).splitlines()[-1][:120],
    )

    assert result.returncode == 0, result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout
    assert "WARNINGS" not in result.stderr


def test_check_deploy_does_fail_when_a_production_setting_is_weakened(tmp_path):
    """The check above can fail: HSTS preload turned off is reported, as the README says."""
    result = check_deploy(tmp_path, LLMOPS_HSTS_PRELOAD="false")

    assert result.returncode != 0
    assert "security.W021" in result.stderr
