"""ServeConfig from the environment (AISLE_<KEY>), and the app factory that reads it."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import typing
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aisle.configs import load_config
from aisle.errors import AisleError
from aisle.serving.config import ServeConfig, env_overrides


def from_env(environ: dict[str, str]) -> ServeConfig:
    return load_config(ServeConfig, None, env_overrides(environ))


def another_value(field: dataclasses.Field, tp: object) -> tuple[str, object]:
    """A value other than ``field``'s default: as the environment spells it, and as read."""
    default = field.default
    if tp is bool:
        return str(not default).lower(), not default
    if tp is int:
        return str(default + 1), default + 1  # type: ignore[operator]
    if tp is float:
        return str(default + 0.5), default + 0.5  # type: ignore[operator]
    if tp is str:
        return "some text", "some text"
    literal = tp if typing.get_origin(tp) is typing.Literal else typing.get_args(tp)[0]
    return typing.get_args(literal)[-1], typing.get_args(literal)[-1]  # Literal[...] [| None]


def test_every_key_can_be_set_as_aisle_key() -> None:
    hints = typing.get_type_hints(ServeConfig)
    environ, expected = {}, {}
    for field in dataclasses.fields(ServeConfig):
        text, value = another_value(field, hints[field.name])
        environ[f"AISLE_{field.name.upper()}"] = text
        expected[field.name] = value
    assert dataclasses.asdict(from_env(environ)) == expected


@pytest.mark.parametrize(("environ", "key", "value"), [
    ({"AISLE_PORT": "8001"}, "port", 8001),
    ({"AISLE_REDIS_TIMEOUT_S": "0.2"}, "redis_timeout_s", 0.2),
    ({"AISLE_BATCH_WAIT_MS": "3"}, "batch_wait_ms", 3.0),
    ({"AISLE_QUERY_SPELLING": "false"}, "query_spelling", False),
    ({"AISLE_QUERY_SPELLING": "0"}, "query_spelling", False),
    ({"AISLE_QUERY_SPELLING": "Yes"}, "query_spelling", True),
    ({"AISLE_DEFAULT_MODE": "dense"}, "default_mode", "dense"),
    ({"AISLE_DEFAULT_MODE": "none"}, "default_mode", None),
    ({"AISLE_BACKEND": "onnx-int8"}, "backend", "onnx-int8"),
    ({"AISLE_INDEX": " runs/demo/index "}, "index", "runs/demo/index"),
    ({"AISLE_ADMIN_TOKEN": "s3cret"}, "admin_token", "s3cret"),
    ({"AISLE_REDIS_URL": ""}, "redis_url", ""),
    # REDIS_URL is read as it always was; AISLE_REDIS_URL wins over it
    ({"REDIS_URL": "redis://h:6379/0"}, "redis_url", "redis://h:6379/0"),
    ({"REDIS_URL": "redis://a/0", "AISLE_REDIS_URL": "redis://b/0?x=1"}, "redis_url",
     "redis://b/0?x=1"),
    ({"HOME": "/root", "PORT": "9"}, "port", 8000),  # other variables are not ours
])
def test_each_type_is_read_from_its_text(environ: dict[str, str], key: str,
                                         value: object) -> None:
    assert getattr(from_env(environ), key) == value


@pytest.mark.parametrize(("environ", "message"), [
    ({"AISLE_PORT": "eighty"}, "environment variable AISLE_PORT: config key 'port': "
                               "'eighty' is not of type int"),
    ({"AISLE_MAX_K": "10.5"}, "AISLE_MAX_K: config key 'max_k': '10.5' is not of type int"),
    ({"AISLE_QUERY_SPELLING": "maybe"}, "AISLE_QUERY_SPELLING: config key 'query_spelling': "
                                        "'maybe' is not a boolean"),
    ({"AISLE_DEFAULT_MODE": "fuzzy"}, "AISLE_DEFAULT_MODE: config key 'default_mode': "
                                      "'fuzzy' is not one of ('dense', 'lexical', 'hybrid')"),
    ({"AISLE_BACKEND": ""}, "environment variable AISLE_BACKEND: config key 'backend'"),
    ({"REDIS_URL": "x", "AISLE_LRU_SIZE": "many"}, "AISLE_LRU_SIZE"),
    # Numbers out of range are refused at start-up, not met by every request.
    ({"AISLE_LRU_SIZE": "-1"}, "AISLE_LRU_SIZE: lru_size must be >= 0, got -1"),
    ({"AISLE_RESULT_CACHE_ROWS": "-1"}, "result_cache_rows must be >= 0, got -1"),
    ({"AISLE_CACHE_TTL_S": "0"}, "cache_ttl_s must be >= 1, got 0"),
    ({"AISLE_BATCH_WAIT_MS": "nan"}, "batch_wait_ms must be >= 0, got nan"),
    ({"AISLE_REDIS_TIMEOUT_S": "0"}, "redis_timeout_s must be > 0 and finite, got 0.0"),
    ({"AISLE_REDIS_TIMEOUT_S": "inf"}, "redis_timeout_s must be > 0 and finite, got inf"),
    ({"AISLE_BATCH_WAIT_MS": "inf"}, "batch_wait_ms must be finite, got inf"),
    ({"AISLE_PORT": "70000"}, "port must be at most 65535, got 70000"),
])
def test_a_bad_value_names_its_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(AisleError) as info:
        env_overrides(environ)
    assert message in str(info.value)


def test_a_renamed_key_is_refused_with_what_replaced_it(tmp_path: Path) -> None:
    """result_cache_size counted entries; result_cache_rows counts rows. An old setting is
    refused, not ignored: ignored, a service meant to cache nothing would cache."""
    toml = tmp_path / "serve.toml"
    toml.write_text("result_cache_size = 0\n", encoding="utf-8")
    for load in (lambda: load_config(ServeConfig, toml),
                 lambda: load_config(ServeConfig, None, ["result_cache_size=0"]),
                 lambda: from_env({"AISLE_RESULT_CACHE_SIZE": "0"})):
        with pytest.raises(AisleError, match=r"(?i)result_cache_size.* is gone: result_cache_rows "
                                             r"bounds the result cache by result rows"):
            load()


def test_an_unknown_aisle_variable_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert from_env({"AISLE_PROT": "9000"}).port == 8000
    assert "ignoring AISLE_PROT: no such ServeConfig key" in caplog.text


def test_aisle_serve_reads_the_environment_under_its_command_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from aisle.serving.cli import _config

    toml = tmp_path / "serve.toml"
    toml.write_text("port = 7000\nmax_k = 100\n")
    monkeypatch.setenv("AISLE_PORT", "8001")
    monkeypatch.setenv("AISLE_DEFAULT_K", "7")
    monkeypatch.setenv("AISLE_INDEX", "ignored")
    args = argparse.Namespace(index=Path("idx"), overrides=["default_k=5"], config=toml,
                              model=None, host=None, port=None, autocomplete=None,
                              backend=None)
    # the file, then the environment, then the command line
    config = _config(args)
    assert (config.index, config.port, config.max_k, config.default_k) == ("idx", 8001, 100, 5)
    args.port = 9002
    assert _config(args).port == 9002


def test_the_factory_serves_the_index_the_environment_names(
    sample_index: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aisle.serving.app import app_from_env

    monkeypatch.delenv("AISLE_INDEX", raising=False)
    with pytest.raises(AisleError, match="set AISLE_INDEX"):
        app_from_env()
    for name, value in {"AISLE_INDEX": str(sample_index), "AISLE_WATCH_INTERVAL_S": "0",
                        "AISLE_ADMIN_TOKEN": "from-env", "AISLE_MAX_K": "7"}.items():
        monkeypatch.setenv(name, value)
    # as `AISLE_INDEX=... uvicorn --factory aisle.serving.app:app_from_env` starts it
    with TestClient(app_from_env()) as client:
        r = client.get("/search", params={"q": "claw hammer", "k": 7})
        assert r.status_code == 200 and len(r.json()["results"]) == 7, r.text
        assert client.get("/search", params={"q": "claw hammer", "k": 8}).status_code == 422
        # default_k (10) is capped at max_k: a request without k is answered, with 7
        r = client.get("/search", params={"q": "claw hammer"})
        assert r.status_code == 200 and len(r.json()["results"]) == 7, r.text
        reload = client.post("/admin/reload", headers={"Authorization": "Bearer from-env"})
        assert reload.status_code == 200, reload.text
