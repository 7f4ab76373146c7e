"""The two commands work the first time wherever the project is cloned: a clone inside a
private (mode 700) folder, as root, runs `infra/local.sh up` on private ports and then
`make demo`; a failed `up` leaves nothing running that it started; `down` and `reset` find
the PostgreSQL data wherever `up` put it."""
from __future__ import annotations

import glob
import json
import os
import random
import re
import shutil
import socket
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the server must run as the postgres OS user"),
    pytest.mark.skipif(not glob.glob("/usr/lib/postgresql/*/bin/initdb"), reason="no PostgreSQL server packages"),
]


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _private_ports() -> dict[str, int]:
    rnd = random.Random()
    while True:
        # below Linux's ephemeral range (32768-60999), where any outgoing connection may take a port
        kafka, pg, base = rnd.randrange(22000, 23000, 2), rnd.randrange(23000, 24000), rnd.randrange(24000, 32000, 100)
        wanted = [kafka, kafka + 1, pg, *(base + i for i in range(1, 20)), base + 99]
        if all(_free(p) for p in wanted):
            return {"FENXIAO_KAFKA_PORT": kafka, "FENXIAO_KAFKA_CONTROLLER_PORT": kafka + 1, "FENXIAO_PG_PORT": pg,
                    "FENXIAO_DEMO_BASE_PORT": base}


def _copy_checkout(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.split(b"\0")
    for f in filter(None, files):
        src = ROOT / f.decode()
        if src.is_file():
            (dest / f.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f.decode())
    libs = ROOT / ".local" / "kafka" / "libs"
    if (libs / ".stamp").exists():  # the jars this machine already fetched from Maven Central
        shutil.copytree(libs, dest / ".local" / "kafka" / "libs")


def test_a_clone_in_a_private_folder_runs_both_commands():
    data = None
    private = Path(tempfile.mkdtemp(prefix="fenxiao-private-"))
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    clone = private / "fenxiao"
    _copy_checkout(clone)
    ports = _private_ports()
    env = {k: v for k, v in os.environ.items()
           if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "FENXIAO_TOPIC_NAMESPACE", "VIRTUAL_ENV")}
    env.update({k: str(v) for k, v in ports.items()})

    def sh(*cmd: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, cwd=clone, env=env, capture_output=True, text=True, timeout=timeout)

    try:
        up = sh("make", "infra-up")
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
        data = re.search(r"postgres data: (\S+)", up.stdout).group(1)
        assert not data.startswith(str(private)), "postgres cannot reach a folder inside the private one"
        assert stat.S_IMODE(private.stat().st_mode) == 0o700, "the user's own folder was left as it was"
        status = sh("bash", "infra/local.sh", "status")
        assert status.returncode == 0 and data in status.stdout, status.stdout

        demo = sh("make", "demo", timeout=600)
        out = demo.stdout + demo.stderr
        assert demo.returncode == 0, out[-4000:]
        assert "audit replay: MATCHES the live balances" in out
        # each service's own structured log lines are in its file
        run_dir = max((clone / ".local" / "demo").iterdir(), key=lambda p: p.stat().st_mtime)
        for name in ("referral", "orders", "commission", "payout"):
            events = [json.loads(line)["event"] for line in (run_dir / f"{name}.log").read_text().splitlines()
                      if line.startswith("{")]
            assert "service_started" in events and len(events) >= 3, (name, events)

        # a failed `up` stops the Kafka it started: occupy PostgreSQL's port, then try
        assert sh("bash", "infra/local.sh", "down").returncode == 0
        assert not _open(ports["FENXIAO_KAFKA_PORT"]) and not _open(ports["FENXIAO_PG_PORT"])
        with socket.socket() as squatter:
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            squatter.bind(("127.0.0.1", ports["FENXIAO_PG_PORT"]))
            squatter.listen()
            failed = sh("bash", "infra/local.sh", "up")
        assert failed.returncode != 0
        assert "already in use" in failed.stderr
        assert not _open(ports["FENXIAO_KAFKA_PORT"]), "a failed up left its Kafka running"
        # ... and a second try succeeds
        again = sh("bash", "infra/local.sh", "up")
        assert again.returncode == 0, again.stderr[-2000:]
    finally:
        sh("bash", "infra/local.sh", "reset")
        shutil.rmtree(private, ignore_errors=True)
    assert data and not Path(data).exists(), "reset removes the data it made outside the clone"
