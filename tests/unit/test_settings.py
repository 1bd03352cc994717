"""Settings: the upload TTL and the heartbeat interval derived from stale_write_after."""

from __future__ import annotations

import pytest

from s3compat.settings import ENV_VARS, Settings


def test_upload_ttl_defaults_to_seven_days() -> None:
    assert Settings.from_env({}).upload_ttl == 7 * 24 * 3600


def test_upload_ttl_from_the_environment_and_back() -> None:
    settings = Settings.from_env({"S3COMPAT_UPLOAD_TTL": "3600"})
    assert settings.upload_ttl == 3600
    env = settings.to_env()
    assert env["S3COMPAT_UPLOAD_TTL"] == "3600.0"
    assert Settings.from_env(env).upload_ttl == 3600
    assert "S3COMPAT_UPLOAD_TTL" in ENV_VARS


def test_upload_ttl_must_be_a_number() -> None:
    with pytest.raises(ValueError, match="S3COMPAT_UPLOAD_TTL"):
        Settings.from_env({"S3COMPAT_UPLOAD_TTL": "a week"})


def test_every_variable_to_env_writes_is_one_settings_reads() -> None:
    assert set(Settings().to_env()) <= set(ENV_VARS)


@pytest.mark.parametrize(
    ("stale_after", "heartbeat"),
    [(600.0, 10.0), (30.0, 10.0), (12.0, 4.0), (1.5, 0.5)],
)
def test_heartbeat_fits_several_times_in_the_staleness_window(
    stale_after: float, heartbeat: float
) -> None:
    settings = Settings.from_env({"S3COMPAT_STALE_WRITE_AFTER": str(stale_after)})
    assert settings.heartbeat_interval == pytest.approx(heartbeat)
