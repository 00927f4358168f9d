"""The deployable stack, checked statically (Docker cannot run here): docker-compose.yml, the Dockerfile,
.env.example and the README agree. `docker compose config` validates the file too where the CLI and its
compose plugin are installed (no daemon needed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from labelstudio.server_flags import RECOMMENDED_ENV

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
SERVICES = {"postgres", "redis", "minio", "minio-init", "label-studio", "init", "lensguard", "worker", "gpu-worker"}
ONE_SHOT = {"minio-init", "init"}
SECRET_NAME = re.compile(r"PASSWORD|PASS$|SECRET|TOKEN|_KEY$|ACCESS_KEY|_USER$|USERNAME")
INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)(:?[-?+])?([^}]*)\}")
NOT_SECRETS_WITH_DEFAULTS = {"LENSGUARD_ALLOW_RANDOM_WEIGHTS", "LABEL_STUDIO_HOST"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def _docker_compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _docker_compose_available(), reason="no docker compose plugin; YAML checks below still run")
def test_docker_compose_accepts_the_file_with_every_secret_set(tmp_path):
    env = tmp_path / ".env"
    env.write_text("".join(f"{name}=x{i}\n" for i, name in enumerate(sorted(_variables()))))
    result = subprocess.run(
        [
            "docker",
            "compose",
            "-f",
            str(COMPOSE),
            "--env-file",
            str(env),
            "--profile",
            "gpu",
            "config",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert set(json.loads(result.stdout)["services"]) == SERVICES
    missing = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "--env-file", "/dev/null", "config"], capture_output=True, text=True
    )
    assert missing.returncode != 0 and "in .env" in missing.stderr, "an unset secret stops compose"


def test_the_stack_has_the_services_a_team_deploys(services):
    assert set(services) == SERVICES
    assert services["gpu-worker"]["profiles"] == ["gpu"]
    assert "nvidia" in json.dumps(services["gpu-worker"]["deploy"])
    assert services["worker"]["command"] == ["lensguard", "worker"]
    assert services["lensguard"]["command"] == ["lensguard", "serve"]
    assert services["init"]["command"][:2] == ["lensguard", "init"]


def test_every_long_running_service_has_a_health_check(services):
    for name, service in services.items():
        if name in ONE_SHOT:
            assert service["restart"] == "no", f"{name} runs once"
            continue
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, f"{name} has no health check"


def test_dependencies_wait_for_health_or_completion(services):
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
        for target, rule in depends.items():
            assert target in services, f"{name} depends on unknown {target}"
            expected = "service_completed_successfully" if target in ONE_SHOT else "service_healthy"
            assert rule == {"condition": expected}, f"{name} -> {target}: {rule}"
    backend_needs = {"init", "minio-init", "redis", "label-studio"}
    for name in ("lensguard", "worker", "gpu-worker"):
        assert set(services[name]["depends_on"]) == backend_needs


def test_label_studio_runs_on_postgres_and_redis_persists_behind_a_password(services):
    env = services["label-studio"]["environment"]
    assert env["DJANGO_DB"] == "default" and env["POSTGRE_HOST"] == "postgres"
    assert {"POSTGRE_NAME", "POSTGRE_USER", "POSTGRE_PASSWORD", "POSTGRE_PORT"} <= set(env)
    assert env["POSTGRE_PASSWORD"] == services["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert "postgres" in services["label-studio"]["depends_on"]
    redis = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis and "--requirepass" in redis
    assert "$$REDIS_PASSWORD" in redis, "the password comes from the environment, not the compose file"
    for name in ("lensguard", "worker", "gpu-worker"):
        env = services[name]["environment"]
        assert env["LENSGUARD_REDIS_URL"].startswith("redis://:${REDIS_PASSWORD:?")
        assert (
            env["LENSGUARD_MODEL_DIR"].startswith("s3://") and env["LENSGUARD_S3_ENDPOINT_URL"] == "http://minio:9000"
        )


def test_data_lives_in_named_volumes(compose, services):
    declared = set(compose["volumes"])
    used = set()
    for name, service in services.items():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            assert not source.startswith((".", "/")), f"{name} mounts a host path: {mount}"
            used.add(source)
    assert used == declared
    for name, target in [
        ("postgres", "/var/lib/postgresql/data"),
        ("redis", "/data"),
        ("minio", "/data"),
        ("label-studio", "/label-studio/data"),
    ]:
        assert any(m.split(":")[1] == target for m in services[name]["volumes"]), f"{name} keeps no data"


def test_the_token_reaches_backend_and_workers_through_a_shared_file(services):
    token_file = services["init"]["command"][services["init"]["command"].index("--token-file") + 1]
    volume = next(m for m in services["init"]["volumes"] if token_file.startswith(m.split(":")[1]))
    for name in ("lensguard", "worker", "gpu-worker"):
        assert services[name]["environment"]["LENSGUARD_LABEL_STUDIO_API_KEY_FILE"] == token_file
        assert f"{volume}:ro" in services[name]["volumes"], f"{name} reads the token read-only"
        assert "LENSGUARD_LABEL_STUDIO_API_KEY" not in services[name]["environment"]


def test_no_secret_has_a_default(services):
    for name, service in services.items():
        env = service.get("environment", {})
        for key, value in env.items():
            if SECRET_NAME.search(key) and not key.endswith("_FILE"):
                found = INTERPOLATION.fullmatch(str(value))
                assert found and found[2] == ":?", f"{name}.{key} must be ${{VAR:?...}}, got {value!r}"
    for variable, operator, _ in INTERPOLATION.findall(COMPOSE.read_text()):
        if operator != ":?":
            assert variable in NOT_SECRETS_WITH_DEFAULTS, f"${{{variable}}} has a default or may be empty"


def _variables() -> set[str]:
    return {variable for variable, _, _ in INTERPOLATION.findall(COMPOSE.read_text())}


def test_every_variable_is_documented_in_env_example():
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", (REPO / ".env.example").read_text(), re.MULTILINE))
    assert _variables() - documented == set()
    example = dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", (REPO / ".env.example").read_text(), re.MULTILINE))
    for variable in _variables() - NOT_SECRETS_WITH_DEFAULTS:
        assert not example.get(variable), f".env.example gives {variable} a value; compose must refuse until set"


def test_the_readme_names_every_service():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Deploying with docker compose", 1)[1].split("\n## ", 1)[0]
    for service in SERVICES:
        assert f"`{service}`" in section, f"README's compose section does not name {service}"


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def test_the_dockerfile_runs_unprivileged_with_a_health_check():
    instructions = dockerfile_instructions()
    keywords = [k for k, _ in instructions]
    assert keywords[0] == "FROM"
    users = [arg for k, arg in instructions if k == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image's last USER is not root"
    assert keywords.index("USER") < keywords.index("CMD")
    health = next(arg for k, arg in instructions if k == "HEALTHCHECK")
    assert "CMD" in health and "lensguard" in health
    assert json.loads(next(arg for k, arg in instructions if k == "CMD"))[:2] == ["lensguard", "serve"]
    for keyword, arg in instructions:
        if keyword == "COPY":
            for source in arg.split()[:-1]:
                if not source.startswith("--"):
                    assert (REPO / source).exists(), f"Dockerfile copies {source}, which does not exist"


def test_every_lensguard_command_the_stack_runs_exists():
    from lensguard.cli import build_parser

    parser = build_parser()
    commands = [s["command"] for s in yaml.safe_load(COMPOSE.read_text())["services"].values() if "build" in s]
    checks = [
        s["healthcheck"]["test"][1:]
        for s in yaml.safe_load(COMPOSE.read_text())["services"].values()
        if "build" in s and "healthcheck" in s
    ]
    health = next(arg for k, arg in dockerfile_instructions() if k == "HEALTHCHECK")
    checks.append(json.loads(health.split("CMD", 1)[1]))
    for argv in commands + checks:
        assert argv[0] == "lensguard"
        parser.parse_args(argv[1:])  # exits (SystemExit) on an unknown command or option


def test_the_image_holds_every_package_the_project_installs():
    import tomllib

    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = {arg.split()[0] for k, arg in dockerfile_instructions() if k == "COPY"}
    assert {p.rstrip("*") for p in packages} <= copied


def test_label_studio_runs_with_every_setting_lensguard_relies_on(services):
    env = services["label-studio"]["environment"]
    assert {k: str(v) for k, v in RECOMMENDED_ENV.items()}.items() <= {k: str(v) for k, v in env.items()}.items()
