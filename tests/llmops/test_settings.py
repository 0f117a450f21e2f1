"""Settings come from the environment; a bad variable stops the process naming it."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from llmops.env import Env, redact_url

ROOT = Path(__file__).resolve().parents[2]

PRODUCTION_ENV = {
    "LLMOPS_DEBUG": "false",
    "LLMOPS_SECRET_KEY": secrets.token_urlsafe(60),
    "LLMOPS_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    "LLMOPS_ALLOWED_HOSTS": "llmops.example.com",
}


def manage(*args: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("LLMOPS_", "DATABASE_", "REDIS_"))
    }
    clean.update({"LLMOPS_DATA_DIR": str(tmp_path)}, **env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_typo_in_a_boolean_names_the_variable():
    with pytest.raises(
        ImproperlyConfigured, match="LLMOPS_DEBUG must be true or false, got 'flase'"
    ):
        Env({"LLMOPS_DEBUG": "flase"}).bool("LLMOPS_DEBUG", True)


def test_out_of_range_port_names_the_variable():
    with pytest.raises(ImproperlyConfigured, match="LLMOPS_PORT must be between 1 and 65535"):
        Env({"LLMOPS_PORT": "70000"}).int("LLMOPS_PORT", 8000, min=1, max=65535)


def test_empty_variable_means_default():
    assert Env({"LLMOPS_PORT": "  "}).int("LLMOPS_PORT", 8000) == 8000


def test_url_errors_hide_the_password():
    with pytest.raises(ImproperlyConfigured) as excinfo:
        Env({"DATABASE_URL": "mysql://u:hunter2@db/x"}).url("DATABASE_URL", None, ("postgres",))
    assert "hunter2" not in str(excinfo.value)
    assert "DATABASE_URL" in str(excinfo.value)
    assert redact_url("postgres://u:pw@h/db") == "postgres://u:***@h/db"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LLMOPS_DEBUG": "flase"}, "LLMOPS_DEBUG must be true or false"),
        ({"LLMOPS_PORT": "80a"}, "LLMOPS_PORT must be a whole number"),
        ({"DATABASE_URL": "mysql://db/x"}, "DATABASE_URL must be a URL starting with sqlite://"),
        ({"REDIS_URL": "http://cache"}, "REDIS_URL must be a URL starting with redis://"),
        ({"LLMOPS_DEBUG": "false"}, "LLMOPS_SECRET_KEY must be set"),
        ({**PRODUCTION_ENV, "LLMOPS_SECRET_KEY": "short"}, "LLMOPS_SECRET_KEY must be at least 50"),
        ({**PRODUCTION_ENV, "LLMOPS_ENCRYPTION_KEYS": ""}, "LLMOPS_ENCRYPTION_KEYS must be set"),
        ({**PRODUCTION_ENV, "LLMOPS_ENCRYPTION_KEYS": "nope"}, "LLMOPS_ENCRYPTION_KEYS: key #1"),
    ],
)
def test_bad_variable_fails_at_start_with_a_message_naming_it(env, message, tmp_path):
    result = manage("check", env=env, tmp_path=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_production_mode_passes_check_deploy_with_no_warnings(tmp_path):
    result = manage(
        "check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION_ENV, tmp_path=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_database_and_redis_urls_switch_the_backends(tmp_path):
    probe = (
        "import json; from django.conf import settings as s; print(json.dumps({"
        "'db': s.DATABASES['default']['ENGINE'], 'name': s.DATABASES['default']['NAME'],"
        "'host': s.DATABASES['default']['HOST'], 'layer': s.CHANNEL_LAYERS['default']['BACKEND'],"
        "'broker': s.Q_CLUSTER.get('redis'), 'orm': s.Q_CLUSTER.get('orm'),"
        "'cache': s.CACHES['default']['BACKEND'], 'db_threads': s.LLMOPS_DB_THREADS}))"
    )
    scaled = manage(
        "shell",
        "-c",
        probe,
        env={
            "DATABASE_URL": "postgres://llm:pw@db.internal:5432/llmops",
            "REDIS_URL": "redis://cache:6379/0",
        },
        tmp_path=tmp_path,
    )
    assert scaled.returncode == 0, scaled.stderr
    got = json.loads(scaled.stdout.strip().splitlines()[-1])
    assert got == {
        "db": "llmops.backends.postgresql",
        "name": "llmops",
        "host": "db.internal",
        "layer": "channels_redis.core.RedisChannelLayer",
        "broker": "redis://cache:6379/0",
        "orm": None,
        "cache": "django.core.cache.backends.redis.RedisCache",
        "db_threads": 4,  # PostgreSQL writes rows in parallel
    }

    embedded = manage("shell", "-c", probe, env={}, tmp_path=tmp_path)
    got = json.loads(embedded.stdout.strip().splitlines()[-1])
    assert got["db"] == "llmops.backends.sqlite3"
    assert got["name"] == str(tmp_path / "llmops.sqlite3")
    assert got["layer"] == "channels.layers.InMemoryChannelLayer"
    assert got["orm"] == "default"
    assert got["db_threads"] == 1  # SQLite writes one connection at a time


def test_database_connection_has_the_documented_options(db):
    from django.db import connection

    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA busy_timeout")
            assert cursor.fetchone()[0] == 20000
            cursor.execute("PRAGMA synchronous")
            assert cursor.fetchone()[0] == 1  # NORMAL
    else:
        assert connection.vendor == "postgresql"
        assert connection.settings_dict["CONN_MAX_AGE"] == 0
        assert connection.settings_dict["CONN_HEALTH_CHECKS"] is True
