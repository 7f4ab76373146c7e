"""The Dockerfile, checked without a Docker engine: hadolint, and what the image promises
(base pinned by digest, no installers in the runtime stage, bytecode compiled, non-root,
only the code and the lock in the build context)."""
from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.deploy import k8s

DOCKERFILE = (k8s.ROOT / "Dockerfile").read_text()


def stages(text: str) -> dict[str, list[str]]:
    """Instructions of each stage, by stage name (continuation lines joined)."""
    out: dict[str, list[str]] = {}
    current = None
    for line in re.sub(r"\\\n\s*", " ", text).splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.I)
        if m:
            current = m.group(2) or m.group(1)
            out[current] = [line]
        elif current:
            out[current].append(line)
    return out


def test_hadolint_is_clean():
    tools = k8s.tools_dir()
    if tools is None:
        if os.environ.get("CI"):
            pytest.fail("hadolint missing: .ci/run must run `make k8s-tools` first")
        pytest.skip("make k8s-tools")
    r = subprocess.run([str(tools / "bin" / "hadolint"), "--failure-threshold", "info", str(k8s.ROOT / "Dockerfile")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_base_is_pinned_by_digest():
    (image,) = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE, re.M)
    assert re.fullmatch(r"python:3\.11[\w.-]*-slim[\w.-]*@sha256:[0-9a-f]{64}", image)
    assert all(line.split()[1] == "${PYTHON_IMAGE}" for s in stages(DOCKERFILE).values() for line in s[:1])


def test_runtime_stage_has_no_build_tools_and_runs_as_non_root():
    st = stages(DOCKERFILE)
    assert list(st) == ["build", "runtime"]
    runtime = "\n".join(st["runtime"])
    assert "pip install" not in runtime and "uv " not in runtime and "apt-get" not in runtime
    assert "pip uninstall --yes --quiet pip setuptools wheel" in runtime
    assert "COPY --from=build /opt/venv /opt/venv" in runtime
    (user,) = [line for line in st["runtime"] if line.startswith("USER")]
    uid, gid = user.split()[1].split(":")
    assert int(uid) == 65532 and int(gid) == 65532   # numeric and the manifests' runAsUser


def test_bytecode_is_compiled_at_build_time():
    build = "\n".join(stages(DOCKERFILE)["build"])
    assert "UV_COMPILE_BYTECODE=1" in build                   # the dependencies
    assert "-m compileall" in build and "shared services" in build  # our code
    assert "--no-dev" in build and "UV_FROZEN=1" in build


def test_build_context_is_only_the_lock_and_the_code():
    ignore = (k8s.ROOT / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*")] == "*"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert allowed == {"pyproject.toml", "uv.lock", "shared", "services"}
    copied = {m for m in re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE, re.M) for m in m.split()}
    assert copied <= allowed


def test_manifests_run_the_image_as_its_user():
    pod = (k8s.ROOT / "deploy" / "k8s" / "generate.py").read_text()
    assert '"runAsUser": 65532' in pod and '"runAsGroup": 65532' in pod
