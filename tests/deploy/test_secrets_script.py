"""deploy/k8s/secrets.sh without a cluster: a stand-in `kubectl` first on PATH records the
Secrets it would create (tests/deploy/test_apiserver.py runs the script against a real API
server, outside the quick path). Each service gets its own; orders' WeChat Pay ones are required."""
from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from tests.deploy import k8s

sys.path.insert(0, str(k8s.K8S))
import generate  # noqa: E402  deploy/k8s/generate.py: what the Deployments mount and name

SCRIPT = k8s.K8S / "secrets.sh"

# `kubectl` as secrets.sh calls it: get (absent unless recorded), create secret --dry-run (prints
# the Secret as JSON), label --local (passes it through), apply -f - (records it).
KUBECTL = r'''#!PYTHON
import json, os, sys
args, store = sys.argv[1:], os.environ["FAKE_KUBECTL_STORE"]
if "-n" in args:
    i = args.index("-n"); del args[i:i + 2]
if args[:2] == ["get", "secret"]:
    sys.exit(0 if os.path.exists(os.path.join(store, args[2])) else 1)
if args[:3] == ["create", "secret", "generic"]:
    secret = {"name": args[3], "type": "Opaque", "data": {}}
    for a in args[4:]:
        if a.startswith("--type="):
            secret["type"] = a.split("=", 1)[1]
        elif a.startswith("--from-literal="):
            k, v = a.split("=", 2)[1:]
            secret["data"][k] = v
        elif a.startswith("--from-file="):
            k, path = a.split("=", 2)[1:]
            secret["data"][k] = open(path).read()
    print(json.dumps(secret)); sys.exit(0)
if args[:2] == ["label", "--local"]:
    sys.stdout.write(sys.stdin.read()); sys.exit(0)
if args[:2] == ["apply", "-f"]:
    secret = json.loads(sys.stdin.read())
    with open(os.path.join(store, secret["name"]), "w") as f:
        json.dump(secret, f)
    sys.exit(0)
sys.exit(f"unexpected kubectl {args}")
'''


def run(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, dict[str, dict]]:
    bin_dir, store = tmp_path / "bin", tmp_path / "store"
    bin_dir.mkdir(exist_ok=True)
    store.mkdir(exist_ok=True)
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(KUBECTL.replace("PYTHON", sys.executable))
    kubectl.chmod(kubectl.stat().st_mode | stat.S_IEXEC)
    # only what the script is given: no ORDERS_*/PAYOUT_* of this process leaks into it
    base = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path), "FAKE_KUBECTL_STORE": str(store)}
    r = subprocess.run(["bash", str(SCRIPT), "fenxiao"], env={**base, **env}, capture_output=True, text=True, timeout=120)
    return r, {p.name: json.loads(p.read_text()) for p in store.iterdir()}


REFERRAL_MASTER = base64.b64encode(b"r" * 32).decode()
PAYOUT_MASTER = base64.b64encode(b"p" * 32).decode()


def complete_env(tmp_path: Path) -> dict[str, str]:
    files = {}
    for name in ("orders-merchant", "orders-platform", "payout-merchant", "payout-platform"):
        (tmp_path / f"{name}.pem").write_text(f"-----BEGIN {name}-----\n")
        files[name] = str(tmp_path / f"{name}.pem")
    return {"FENXIAO_IDENTITY_SECRET": "i" * 48, "ORDERS_WECHATPAY_APIV3_KEY": "a" * 32,
            "PAYOUT_WECHAT_APIV3_KEY": "p" * 32, "REFERRAL_CODE_SECRET": "r" * 48,
            "REFERRAL_PERSONAL_DATA_KEY": REFERRAL_MASTER, "PAYOUT_IDENTITY_MASTER_KEY": PAYOUT_MASTER,
            "ORDERS_MERCHANT_KEY_FILE": files["orders-merchant"], "ORDERS_PLATFORM_KEY_FILE": files["orders-platform"],
            "PAYOUT_MERCHANT_KEY_FILE": files["payout-merchant"], "PAYOUT_PLATFORM_KEY_FILE": files["payout-platform"]}


def test_orders_gets_its_wechatpay_secrets_and_key_files(tmp_path):
    r, made = run(tmp_path, **complete_env(tmp_path))
    assert r.returncode == 0, r.stderr
    services = ("referral", "orders", "commission", "payout", "engagement", "console")
    assert set(made) == {f"{s}-{kind}" for s in services for kind in ("pg", "app")} | {
        "orders-wechatpay-keys", "payout-wechatpay-keys"}
    orders = made["orders-app"]["data"]
    assert orders["ORDERS_WECHATPAY_APIV3_KEY"] == "a" * 32 and orders["FENXIAO_IDENTITY_SECRET"] == "i" * 48
    assert not {k for k in orders if k.startswith(("PAYOUT_", "REFERRAL_")) or k.endswith("_FILE")}
    assert "ORDERS_WECHATPAY_APIV3_KEY" not in made["payout-app"]["data"]
    keys = made["orders-wechatpay-keys"]["data"]
    assert keys == {"apiclient_key.pem": "-----BEGIN orders-merchant-----\n", "pub_key.pem": "-----BEGIN orders-platform-----\n"}
    assert made["payout-wechatpay-keys"]["data"]["pub_key.pem"] == "-----BEGIN payout-platform-----\n"
    # the files the orders Deployment mounts and the keys it names are the ones made here
    svc = generate.BY_NAME["orders"]
    assert {f for _, f in svc.key_files} | set(svc.extra_key_files) == set(keys)
    assert set(svc.secret_env) <= set(orders)
    # every key a Deployment names one by one is in that service's Secret, and only there
    for s in generate.SERVICES:
        assert set(s.secret_env) <= set(made[f"{s.name}-app"]["data"]), s.name
    assert made["referral-app"]["data"]["REFERRAL_PERSONAL_DATA_KEY"] == REFERRAL_MASTER
    assert made["payout-app"]["data"]["PAYOUT_IDENTITY_MASTER_KEY"] == PAYOUT_MASTER
    assert not {k for s in made if s != "referral-app" for k in made[s]["data"] if k == "REFERRAL_PERSONAL_DATA_KEY"}
    again, _ = run(tmp_path, **complete_env(tmp_path))
    assert again.returncode == 0 and again.stdout == ""  # idempotent: nothing made twice


def test_without_orders_apiv3_key_or_key_files_nothing_is_made(tmp_path):
    for missing, says in (("ORDERS_WECHATPAY_APIV3_KEY", "set ORDERS_WECHATPAY_APIV3_KEY"),
                          ("ORDERS_MERCHANT_KEY_FILE", "set ORDERS_MERCHANT_KEY_FILE"),
                          ("ORDERS_PLATFORM_KEY_FILE", "set ORDERS_PLATFORM_KEY_FILE")):
        env = complete_env(tmp_path)
        del env[missing]
        r, made = run(tmp_path, **env)
        assert r.returncode != 0 and says in r.stderr, (missing, r.stderr)
        assert made == {}, missing
    r, made = run(tmp_path, **{**complete_env(tmp_path), "ORDERS_WECHATPAY_APIV3_KEY": "too-short"})
    assert r.returncode != 0 and "32 characters" in r.stderr and made == {}


def test_payout_gets_its_apiv3_key_but_not_its_plain_settings_and_requires_the_key(tmp_path):
    """payout's non-secret transfer settings come from the overlay's ConfigMap payout-wechatpay; its
    APIv3 key, which its Deployment names, is required in payout-app."""
    r, made = run(tmp_path, **complete_env(tmp_path))
    assert r.returncode == 0, r.stderr
    payout = made["payout-app"]["data"]
    assert payout["PAYOUT_WECHAT_APIV3_KEY"] == "p" * 32
    assert not {k for k in payout if k.startswith(("ORDERS_", "REFERRAL_")) or k.endswith("_FILE")}
    assert set(generate.BY_NAME["payout"].secret_env) <= set(payout)
    for i, env in enumerate(({k: v for k, v in complete_env(tmp_path).items() if k != "PAYOUT_WECHAT_APIV3_KEY"},
                             {**complete_env(tmp_path), "PAYOUT_WECHAT_APIV3_KEY": "too-short"})):
        fresh = tmp_path / f"case{i}"  # a namespace where nothing exists yet
        fresh.mkdir()
        r, made = run(fresh, **env)
        assert r.returncode != 0 and "PAYOUT_WECHAT_APIV3_KEY" in r.stderr and made == {}, r.stderr


def test_without_a_sound_master_key_nothing_is_made(tmp_path):
    """The services refuse to start without their crypto-shredding master keys (shared/shredding.py):
    the script refuses first, before creating any Secret."""
    for missing in ("REFERRAL_PERSONAL_DATA_KEY", "PAYOUT_IDENTITY_MASTER_KEY", "REFERRAL_CODE_SECRET"):
        env = complete_env(tmp_path)
        del env[missing]
        r, made = run(tmp_path, **env)
        assert r.returncode != 0 and f"set {missing}" in r.stderr, (missing, r.stderr)
        assert made == {}, missing
    for bad in (base64.b64encode(b"k" * 31).decode(), "not base64 of anything, at least 32 characters long"):
        for name in ("REFERRAL_PERSONAL_DATA_KEY", "PAYOUT_IDENTITY_MASTER_KEY"):
            r, made = run(tmp_path, **{**complete_env(tmp_path), name: bad})
            assert r.returncode != 0 and f"{name} must be base64 of 32 bytes" in r.stderr and made == {}, (name, r.stderr)
