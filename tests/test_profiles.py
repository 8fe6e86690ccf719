"""dream.toml profiles: a CI job and an operator type the same short commands; secrets only by variable name."""

from __future__ import annotations

from pathlib import Path

import pytest

from dreamcli.errors import ExitCode
from tests.conftest import served_cloudflare

TOML = """
[profiles.local]
store = "emulator:data/store.db"

[profiles.prod]
store = "cloudflare"
env = { CLOUDFLARE_API_TOKEN = "PROD_CF_TOKEN", CLOUDFLARE_ACCOUNT_ID = "PROD_CF_ACCOUNT", CLOUDFLARE_BASE_URL = "PROD_CF_BASE" }

[profiles.leaky]
store = "cloudflare"
env = { CLOUDFLARE_API_TOKEN = "cf-token-in-the-file" }
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "dream.toml").write_text(TOML)
    (tmp_path / "deep" / "er").mkdir(parents=True)
    monkeypatch.delenv("DREAM_STORE", raising=False)
    monkeypatch.chdir(tmp_path / "deep" / "er")  # the nearest dream.toml is two folders up
    return tmp_path


def test_a_profile_names_the_store_relative_to_its_file(dream, project):
    assert dream("--profile", "local", "flow", "run").exit_code == 0
    assert (project / "data" / "store.db").exists()
    assert dream("kv", "verify", "--profile", "local").exit_code == 0  # after the subcommand too
    other = project / "other.db"
    assert dream("--profile", "local", "--store", f"emulator:{other}", "flow", "run").exit_code == 0
    assert other.exists()  # --store on the command line wins


def test_production_settings_come_from_the_variables_the_profile_names(dream, project, tmp_path, monkeypatch):
    with served_cloudflare(tmp_path / "cloudflare.db") as (_, env):
        monkeypatch.setenv("PROD_CF_TOKEN", env["CLOUDFLARE_API_TOKEN"])
        monkeypatch.setenv("PROD_CF_ACCOUNT", env["CLOUDFLARE_ACCOUNT_ID"])
        monkeypatch.setenv("PROD_CF_BASE", env["CLOUDFLARE_BASE_URL"])
        assert dream("--profile", "prod", "kv", "put", "k", "v", "--ns", "api-usage").exit_code == 0
        assert dream("--profile", "prod", "kv", "get", "k", "--ns", "api-usage").stdout == "v"
        monkeypatch.delenv("PROD_CF_TOKEN")
        unset = dream("--profile", "prod", "kv", "list", "--ns", "api-usage")
        assert unset.exit_code == ExitCode.USAGE and "takes CLOUDFLARE_API_TOKEN from the variable" in unset.stderr
        assert "PROD_CF_TOKEN" not in unset.stderr  # a name, but it might have been a pasted secret


def test_bad_profiles_are_refused(dream, project):
    unknown = dream("--profile", "staging", "kv", "verify")
    assert unknown.exit_code == ExitCode.NOT_FOUND and "its profiles: leaky, local, prod" in unknown.stderr
    leaky = dream("--profile", "leaky", "kv", "verify")
    assert leaky.exit_code == ExitCode.USAGE and "which never goes in the file" in leaky.stderr
    assert "cf-to" not in leaky.stderr  # not even its start


def test_a_secret_pasted_as_a_profiles_store_is_refused_without_being_shown(dream, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for pasted in ("sk_live_51Habcdefghijklmnopqrstu", "cloudflare:" + "Zx9" * 14):
        (tmp_path / "dream.toml").write_text(f'[profiles.prod]\nstore = "{pasted}"\n')
        result = dream("--profile", "prod", "kv", "list", "--ns", "api-tokens")
        assert result.exit_code == 2 and "looks like a secret key (not shown)" in result.stderr
        assert pasted[:6] not in result.stderr.replace("cloudf", "") and pasted[-6:] not in result.stderr


def test_which_store_wins_is_what_the_readme_says(dream, tmp_path, monkeypatch):
    """--store on the command line, else the profile's (--profile or DREAM_PROFILE), else DREAM_STORE."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dream.toml").write_text('[profiles.p]\nstore = "emulator:from-profile.db"\n')
    monkeypatch.setenv("DREAM_STORE", f"emulator:{tmp_path / 'from-env.db'}")
    monkeypatch.setenv("DREAM_PROFILE", "p")
    assert dream("kv", "put", "k", "v", "--ns", "api-tokens").exit_code == 0
    assert (tmp_path / "from-profile.db").exists() and not (tmp_path / "from-env.db").exists()
    assert (
        dream("--store", f"emulator:{tmp_path / 'flag.db'}", "kv", "put", "k", "v", "--ns", "api-tokens").exit_code == 0
    )
    assert (tmp_path / "flag.db").exists() and not (tmp_path / "from-env.db").exists()
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert "else the profile's (from `--profile` or `DREAM_PROFILE`), else `DREAM_STORE`" in readme
