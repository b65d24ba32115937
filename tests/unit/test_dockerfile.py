"""The Dockerfile builds with the steps `make` already proves and runs only what it needs.

`docker build` is not available where the tests run; these checks tie each step of the
image to its counterpart in the Makefile and scripts/setup.sh, and
tests/integration/test_image_build_steps.py runs those same steps in a clean copy.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

import pytest

from carmenta import frontend_build
from carmenta.cli import COMMANDS
from carmenta.settings import PROJECT_ROOT


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]]

    def arguments(self, keyword: str) -> list[str]:
        return [argument for name, argument in self.instructions if name == keyword]


def parse_dockerfile(text: str) -> list[Stage]:
    stages: list[Stage] = []
    logical = text.replace("\\\n", " ")
    for raw in logical.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, argument = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = argument.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(name=name, base=words[0], instructions=[]))
        elif stages:
            stages[-1].instructions.append((keyword, " ".join(argument.split())))
    return stages


def copied_paths(stage: Stage) -> list[str]:
    """Destination-relative sources of every COPY in `stage` (flags dropped)."""
    paths: list[str] = []
    for argument in stage.arguments("COPY"):
        words = [word for word in shlex.split(argument) if not word.startswith("--")]
        paths.extend(words[:-1])
    return paths


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    return {
        stage.name: stage for stage in parse_dockerfile((PROJECT_ROOT / "Dockerfile").read_text())
    }


def test_two_stages_on_the_same_python(stages):
    assert list(stages) == ["build", "runtime"]
    assert stages["build"].base == stages["runtime"].base == "${PYTHON_IMAGE}"


def test_the_build_stage_installs_with_the_same_script_as_make(stages):
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    setup_recipe = makefile.split("\nsetup:\n", 1)[1].splitlines()[0].strip()
    assert setup_recipe == "@scripts/setup.sh"
    build = stages["build"]
    assert any("scripts/setup.sh" in run for run in build.arguments("RUN"))
    # setup.sh hashes and installs exactly these files; the image copies each of them first.
    setup = (PROJECT_ROOT / "scripts" / "setup.sh").read_text()
    for requirements in ("requirements.txt", "requirements-model.txt"):
        assert requirements in setup
        assert requirements in copied_paths(build)
    # setup.sh refuses Node.js below 20; the build stage's Debian ships 20.
    assert "python:3.11-slim-trixie" in (PROJECT_ROOT / "Dockerfile").read_text()
    assert any("nodejs npm" in run for run in build.arguments("RUN"))


def test_the_interface_is_built_with_the_cli_build_command(stages):
    runs = stages["build"].arguments("RUN")
    assert any(".venv/bin/python -m carmenta build" in run for run in runs)
    assert "build" in COMMANDS
    assert "PUBLIC_URL" in " ".join(stages["build"].arguments("ARG"))


def test_the_runtime_has_every_input_of_the_build_fingerprint(stages):
    """Otherwise `run` would find the interface out of date and try to rebuild it."""
    copied = {path.removeprefix("/app/") for path in copied_paths(stages["runtime"])}
    for pattern in frontend_build._INPUT_GLOBS:
        top = pattern.split("/", 1)[0]
        assert top in copied, f"{top} is a build input missing from the runtime image"
    assert ".web" in copied  # the compiled interface and its fingerprint
    assert {"alembic", "alembic.ini"} <= copied  # `migrate` runs from the image


def test_the_runtime_is_slim_and_runs_as_a_user(stages):
    runtime = stages["runtime"]
    assert not any("nodejs" in run or "npm" in run for run in runtime.arguments("RUN"))
    assert ".tools" not in " ".join(copied_paths(runtime))
    [user] = runtime.arguments("USER")
    assert user not in ("root", "0")
    env = " ".join(runtime.arguments("ENV"))
    assert "PORT=" in env and "HOST=0.0.0.0" in env and "LOG_FORMAT=json" in env
    [command] = runtime.arguments("CMD")
    assert json.loads(command) == ["python", "-m", "carmenta", "run"]
    [health] = runtime.arguments("HEALTHCHECK")
    assert "/health" in health


def test_local_installs_data_and_secrets_stay_out_of_the_build_context():
    ignored = {
        line.strip()
        for line in (PROJECT_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".tools", ".data", ".web", ".env", ".git"} <= ignored
