"""deploy/k8s, checked offline: every overlay renders, every object validates strictly against
the Kubernetes 1.34 schemas and the real CRDs (Strimzi, CloudNativePG, prometheus-operator),
selectors select, pods meet the restricted Pod Security profile, Kafka objects follow
shared/topics.py. The tools and schemas come from `make k8s-tools` (network, once per machine);
without them these tests skip, except under CI where they fail."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from urllib.parse import urlsplit

import pytest

from shared import topics
from tests.deploy import k8s

PRODUCTION_TOPICS = {  # names without a test namespace: what the KafkaTopics must create
    t.removeprefix(topics.NAMESPACE + ".") if topics.NAMESPACE else t for t in topics.ALL_TOPICS}
ALL_KAFKA_TOPICS = PRODUCTION_TOPICS | {topics.dead_letter(t) for t in PRODUCTION_TOPICS}
sys.path.insert(0, str(k8s.K8S))
import generate  # noqa: E402  deploy/k8s/generate.py: the deployed services

DEPLOYED = [s.name for s in generate.SERVICES]
OWN = {svc: (t.removeprefix(topics.NAMESPACE + ".") if topics.NAMESPACE else t)
       for svc, t in topics.OWNER_TOPIC.items() if svc in DEPLOYED}


@pytest.fixture(scope="module")
def tools():
    found = k8s.tools_dir()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("Kubernetes validation tools missing: .ci/run must run `make k8s-tools` first")
        pytest.skip("Kubernetes validation tools not set up: make k8s-tools")
    return found


@pytest.fixture(scope="module")
def rendered(tools) -> dict[str, str]:
    return {o: k8s.render(tools, k8s.K8S / "overlays" / o) for o in k8s.OVERLAYS}


@pytest.fixture(scope="module")
def objects(rendered) -> dict[str, list[dict]]:
    return {o: k8s.docs(text) for o, text in rendered.items()}


def of_kind(objs: list[dict], kind: str) -> list[dict]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[dict], kind: str, name: str) -> dict:
    (found,) = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def test_generated_manifests_are_up_to_date():
    r = subprocess.run([sys.executable, str(k8s.K8S / "generate.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# ---- schemas ------------------------------------------------------------------------------

@pytest.mark.parametrize("overlay", k8s.OVERLAYS)
def test_every_rendered_object_is_valid_and_none_is_skipped(tools, rendered, overlay):
    result = k8s.kubeconform(tools, rendered[overlay])
    assert result["problems"] == [] and result["exit"] == 0
    s = result["summary"]
    assert s["valid"] == len(k8s.docs(rendered[overlay])) > 40 and s["skipped"] == 0 and s["errors"] == 0


def _break(objs: list[dict], kind: str, name: str, change) -> str:
    objs = copy.deepcopy(objs)
    change(one(objs, kind, name))
    return k8s.dump(objs)


def _invalid(tools, text: str) -> list[str]:
    result = k8s.kubeconform(tools, text)
    assert result["exit"] != 0
    return result["problems"]


def test_a_misspelled_field_is_caught(tools, objects):
    def typo(d):
        c = d["spec"]["template"]["spec"]["containers"][0]
        c["imagePullPolcy"] = "Always"
    problems = _invalid(tools, _break(objects["prod"], "Deployment", "orders", typo))
    assert len(problems) == 1 and "Deployment/orders" in problems[0] and "imagePullPolcy" in problems[0]


def test_a_misspelled_field_in_a_custom_resource_is_caught(tools, objects):
    def typo(t):
        t["spec"]["partitons"] = t["spec"].pop("partitions")
    topic = sorted(ALL_KAFKA_TOPICS)[0]
    problems = _invalid(tools, _break(objects["prod"], "KafkaTopic", topic, typo))
    assert len(problems) == 1 and "partitons" in problems[0]

    def pg_typo(c):
        c["spec"]["instance"] = c["spec"].pop("instances")
    problems = _invalid(tools, _break(objects["prod"], "Cluster", "fenxiao-pg", pg_typo))
    assert len(problems) == 1 and "Cluster/fenxiao-pg" in problems[0] and "instance" in problems[0]


def test_a_wrong_type_is_caught(tools, objects):
    def text_replicas(d):
        d["spec"]["replicas"] = "two"
    problems = _invalid(tools, _break(objects["prod"], "Deployment", "referral", text_replicas))
    assert len(problems) == 1 and "Deployment/referral" in problems[0]

    def text_partitions(t):
        t["spec"]["partitions"] = "four"
    problems = _invalid(tools, _break(objects["prod"], "KafkaTopic", sorted(ALL_KAFKA_TOPICS)[0], text_partitions))
    assert len(problems) == 1 and "KafkaTopic" in problems[0]

    def rule_without_expr(r):
        r["spec"]["groups"][0]["rules"][0]["expr"] = {"sum": "fenxiao_consumer_lag"}
    problems = _invalid(tools, _break(objects["prod"], "PrometheusRule", "fenxiao", rule_without_expr))
    assert len(problems) == 1 and "PrometheusRule/fenxiao" in problems[0]


# ---- what schemas cannot see --------------------------------------------------------------

@pytest.mark.parametrize("overlay", k8s.OVERLAYS)
def test_lint_finds_nothing(objects, overlay):
    assert k8s.lint(objects[overlay]) == []


def test_a_selector_mismatch_is_caught(objects):
    objs = copy.deepcopy(objects["prod"])
    one(objs, "Service", "payout")["spec"]["selector"]["app.kubernetes.io/name"] = "payouts"
    one(objs, "Deployment", "orders")["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] = "api"
    one(objs, "PodDisruptionBudget", "referral")["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] = "referal"
    problems = k8s.lint(objs)
    assert any(p.startswith("Service/payout: selector") for p in problems)
    assert any(p.startswith("Deployment/orders: selector does not match") for p in problems)
    assert any(p.startswith("PodDisruptionBudget/referral: selector") for p in problems)
    # the orders Service and PDB now select nothing either: the Deployment's labels are unchanged,
    # but nothing else was reported
    assert len(problems) == 3, problems


def test_a_pod_security_slip_is_caught(objects):
    objs = copy.deepcopy(objects["prod"])
    c = one(objs, "Deployment", "commission")["spec"]["template"]["spec"]["containers"][0]
    c["securityContext"]["readOnlyRootFilesystem"] = False
    del c["livenessProbe"]
    problems = k8s.lint(objs)
    assert sorted(problems) == ["Deployment/commission container commission: no livenessProbe",
                                "Deployment/commission container commission: root filesystem is writable"]


# ---- the platform: Kafka, PostgreSQL, scaling ---------------------------------------------

@pytest.mark.parametrize("overlay, nodes, rf, isr", [("prod", 3, 3, 2), ("dev", 1, 1, 1)])
def test_kafka_cluster_and_topics(objects, overlay, nodes, rf, isr):
    objs = objects[overlay]
    pool = one(objs, "KafkaNodePool", "dual")
    assert pool["spec"]["replicas"] == nodes and set(pool["spec"]["roles"]) == {"controller", "broker"}
    kafka = one(objs, "Kafka", "fenxiao-kafka")
    assert kafka["metadata"]["annotations"]["strimzi.io/kraft"] == "enabled"
    cfg = kafka["spec"]["kafka"]["config"]
    assert cfg["default.replication.factor"] == rf and cfg["min.insync.replicas"] == isr
    assert cfg["auto.create.topics.enable"] is False
    kt = {t["spec"]["topicName"]: t["spec"] for t in of_kind(objs, "KafkaTopic")}
    assert set(kt) == ALL_KAFKA_TOPICS
    for spec in kt.values():
        assert spec["partitions"] == topics.PARTITIONS and spec["replicas"] == rf
        assert spec["config"]["retention.ms"] == -1 and spec["config"]["retention.bytes"] == -1
        assert spec["config"]["min.insync.replicas"] == isr


def test_each_service_writes_only_its_own_topic_and_dead_letters(objects):
    users = {u["metadata"]["name"]: u["spec"] for u in of_kind(objects["prod"], "KafkaUser")}
    assert set(users) == set(DEPLOYED) == set(OWN)
    for svc, spec in users.items():
        assert spec["authentication"]["type"] == "scram-sha-512"
        written = {a["resource"]["name"] for a in spec["authorization"]["acls"]
                   if a["resource"]["type"] == "topic" and {"Write", "All"} & set(a["operations"])}
        assert OWN[svc] in written
        others = written - {OWN[svc]}
        assert all(t.endswith(topics.DEAD_LETTER_SUFFIX) for t in others), (svc, others)
        assert not {t for t in written if t in PRODUCTION_TOPICS and t != OWN[svc]}
        readable = {a["resource"]["name"] for a in spec["authorization"]["acls"]
                    if a["resource"]["type"] == "topic" and {"Read", "DescribeConfigs"} <= set(a["operations"])}
        assert OWN[svc] in readable and readable <= PRODUCTION_TOPICS  # reads (and checks the retention of) events only
        groups = [a for a in spec["authorization"]["acls"] if a["resource"]["type"] == "group"]
        assert groups == [{"resource": {"type": "group", "name": f"{svc}.", "patternType": "prefix"}, "operations": ["Read"]}]


def test_services_never_create_topics_and_connect_with_their_own_credentials(objects):
    objs = objects["prod"]
    assert one(objs, "ConfigMap", "fenxiao-common")["data"]["FENXIAO_CREATE_TOPICS"] == "false"
    for svc in OWN:
        c = one(objs, "Deployment", svc)["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e for e in c["env"]}
        assert env["PGUSER"]["valueFrom"]["secretKeyRef"]["name"] == f"{svc}-pg"
        assert "@fenxiao-pg-rw:5432/" in env["DATABASE_URL"]["value"]
        assert "sslmode=verify-full&sslrootcert=/etc/fenxiao/pg-ca/ca.crt" in env["DATABASE_URL"]["value"]
        assert env["KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == svc  # Strimzi's KafkaUser Secret
        assert {"secretRef": {"name": f"{svc}-app"}} in c["envFrom"]


@pytest.mark.parametrize("overlay, instances", [("prod", 2), ("dev", 1)])
def test_postgres_roles_own_their_schemas(objects, overlay, instances):
    cluster = one(objects[overlay], "Cluster", "fenxiao-pg")
    assert cluster["spec"]["instances"] == instances
    roles = {r["name"]: r for r in cluster["spec"]["managed"]["roles"]}
    assert set(roles) == set(OWN)
    sql = cluster["spec"]["bootstrap"]["initdb"]["postInitApplicationSQL"]
    for svc, role in roles.items():
        assert role["login"] and role["passwordSecret"]["name"] == f"{svc}-pg"
        assert f"CREATE SCHEMA {svc} AUTHORIZATION {svc}" in sql
    if overlay == "prod":
        assert one(objects[overlay], "ScheduledBackup", "fenxiao-pg-nightly")["spec"]["cluster"]["name"] == "fenxiao-pg"
        assert "barmanObjectStore" in cluster["spec"]["backup"]


def test_scaling_follows_partitions(objects):
    """Every service scales out by partitions (commission too, since its order workers share the
    order partitions): an HPA on its consumer lag, never more replicas than partitions."""
    objs = objects["prod"]
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h["spec"] for h in of_kind(objs, "HorizontalPodAutoscaler")}
    assert set(hpas) == set(DEPLOYED)
    for spec in hpas.values():
        assert 1 <= spec["minReplicas"] <= spec["maxReplicas"] <= topics.PARTITIONS
        (metric,) = spec["metrics"]
        assert metric["external"]["metric"] == {"name": "fenxiao_consumer_lag",
                                                "selector": {"matchLabels": {"service": metric["external"]["metric"]["selector"]["matchLabels"]["service"]}}}
    for name, spec in hpas.items():
        assert spec["metrics"][0]["external"]["metric"]["selector"]["matchLabels"]["service"] == name
        assert one(objs, "Deployment", name)["spec"]["strategy"]["type"] == "RollingUpdate"


def test_every_service_with_a_composition_root_is_deployed():
    """A new service (services/<name>/main.py) needs a row in deploy/k8s/generate.py. Reported as
    a warning, not a failure, so that a service landing late does not break the build."""
    roots = sorted(p.parent.name for p in (k8s.ROOT / "services").glob("*/main.py"))
    missing = [r for r in roots if r not in DEPLOYED]
    if missing:
        import warnings
        warnings.warn(f"services without Kubernetes manifests: {missing} (add them to deploy/k8s/generate.py)")
    assert set(DEPLOYED) <= set(roots)


def test_audit_replay_never_overlaps_and_its_failure_is_alerted(objects):
    objs = objects["prod"]
    cron = one(objs, "CronJob", "audit-replay")["spec"]
    assert cron["concurrencyPolicy"] == "Forbid"
    assert cron["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"][-1] == "services.commission.replay"
    rules = {r["alert"]: r for g in one(objs, "PrometheusRule", "fenxiao")["spec"]["groups"] for r in g["rules"]}
    assert "audit-replay" in rules["FenxiaoAuditReplayDifferences"]["expr"]
    for metric in ("fenxiao_consumer_lag", "fenxiao_events_dead_lettered_total", "fenxiao_partition_halted"):
        assert any(metric in r["expr"] for r in rules.values()), metric


def test_the_staged_apply_in_docs_deploy_md_brings_what_each_step_needs(objects):
    """Step 1 applies `component notin (server,migration,audit-replay)`, step 3 the migration
    Jobs: their ServiceAccounts and NetworkPolicies must already be there after step 1."""
    objs = objects["prod"]
    component = lambda o: o["metadata"].get("labels", {}).get("app.kubernetes.io/component")  # noqa: E731
    step1 = [o for o in objs if component(o) not in ("server", "migration", "audit-replay")]
    kinds1 = {(o["kind"], o["metadata"]["name"]) for o in step1}
    assert not {k for k, _ in kinds1} & {"Job", "CronJob", "HorizontalPodAutoscaler"}
    assert {n for k, n in kinds1 if k == "Deployment"} == {"otel-collector"}   # not the services
    for svc in OWN:
        assert ("ServiceAccount", svc) in kinds1 and ("NetworkPolicy", svc) in kinds1
    assert {"Namespace", "Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser", "Cluster", "ConfigMap"} <= {k for k, _ in kinds1}
    jobs = [o for o in objs if component(o) == "migration"]
    assert sorted(j["metadata"]["name"] for j in jobs) == sorted(f"{s}-migrate" for s in OWN)
    assert all(j["kind"] == "Job" for j in jobs)


# ---- orders' WeChat Pay settings ----------------------------------------------------------

def _orders_required() -> set[str]:
    """Every WeChat Pay setting of orders without a usable default (services/orders/settings.py):
    a new one is required here too without editing this test."""
    from services.orders.settings import OrdersSettings

    return {f"ORDERS_{name.upper()}" for name, f in OrdersSettings.model_fields.items()
            if name.startswith("wechatpay_") and f.get_default(call_default_factory=True) in ("", {}, None)}


ORDERS_SECRETS = {"ORDERS_WECHATPAY_APIV3_KEY"}  # only from the orders-app Secret (secrets.sh)
KEYS_DIR = "/var/run/secrets/wechatpay/"


def _as_the_service_reads(settings_type, env: dict[str, str]):
    """The settings the service builds from these variables (JSON values parsed as from the
    environment), read from a dotenv file: this process's own environment stays as it is."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "env")
        with open(path, "w") as f:
            f.writelines(f"{k}='{v}'\n" for k, v in env.items() if "'" not in v)
        return settings_type(_env_file=path)


def _wechat_deployment_problems(objs: list[dict], svc: str, *, required: set[str], app_secrets: set[str],
                                never_in_config_map: set[str], key_files: tuple[str, ...],
                                key_file_map: str) -> tuple[list[str], dict[str, str]]:
    """What the Deployment of a service that calls WeChat Pay gets wrong (orders and payout alike):
    a required setting unset, a secret not from `<svc>-app`, a secret in a ConfigMap it reads, key
    files not mounted from `<svc>-wechatpay-keys`. Returns the problems and the plain (non-secret)
    variables, for the service's own checks of their values."""
    c = one(objs, "Deployment", svc)["spec"]["template"]["spec"]
    (container,) = c["containers"]
    env = k8s.container_env(objs, container)
    problems = [f"{n}: not set" for n in sorted(required - set(env))]
    for n in sorted(app_secrets & set(env)):
        if env[n] != ("secret", f"{svc}-app/{n}"):
            problems.append(f"{n}: must come from the {svc}-app Secret, not {env[n][0]}")
    cms = k8s.config_maps(objs)
    for source in container.get("envFrom", []):  # even where `env` overrides it
        for n, value in cms.get(source.get("configMapRef", {}).get("name"), {}).items():
            if "PRIVATE KEY" in value or n in never_in_config_map:
                problems.append(f"{n}: a secret in a ConfigMap")
    mounted = {m["mountPath"].rstrip("/") + "/" for m in container.get("volumeMounts", []) if m["name"] == "wechatpay-keys"}
    (keys,) = [v["secret"] for v in c["volumes"] if v["name"] == "wechatpay-keys"] or [{}]
    files = {KEYS_DIR + i["path"] for i in keys.get("items", [])} if mounted == {KEYS_DIR} else set()
    if keys and keys["secretName"] != f"{svc}-wechatpay-keys":
        problems.append(f"key files from {keys['secretName']}")
    plain = {n: v for n, (kind, v) in env.items() if kind != "secret"}
    try:
        by_serial = json.loads(plain.get(key_file_map, "{}"))
    except ValueError:
        by_serial = {}
        problems.append(f"{key_file_map}: not JSON")
    for what, path in [(n, plain.get(n)) for n in key_files] + [
            (f"platform key {serial}", p) for serial, p in by_serial.items()]:
        if path is not None and path not in files:
            problems.append(f"{what}: {path} is not a file mounted from {svc}-wechatpay-keys")
    return problems, plain


def _merchant_value_problems(prefix: str, notify_url: str, notify_path: str, base_url: str, mchid: str,
                             appid: str) -> list[str]:
    """What both WeChat Pay callers (orders, payout) need right in a cluster, named by the service's
    setting prefix: an https notify URL on the service's own route, WeChat's production API, a
    merchant number and an appid."""
    problems = []
    url = urlsplit(notify_url)
    if url.scheme != "https" or url.query or url.path != notify_path:
        problems.append(f"{prefix}_NOTIFY_URL: {notify_url!r} is not https://<host>{notify_path}")
    if base_url != "https://api.mch.weixin.qq.com":
        problems.append(f"{prefix}_BASE_URL: {base_url!r}")
    if not (mchid.isdigit() and appid.startswith("wx")):
        problems.append(f"{prefix}_MCHID / _APPID: not a merchant number and an appid")
    return problems


def orders_wechatpay_problems(objs: list[dict]) -> list[str]:
    """What keeps the rendered orders server from calling WeChat Pay and verifying its notices:
    a required setting unset, a secret outside its Secret, a key file that is not mounted, a
    value the service would refuse."""
    from services.orders.api.notify import NOTIFY_PATH
    from services.orders.settings import OrdersSettings

    problems, plain = _wechat_deployment_problems(
        objs, "orders", required=_orders_required(), app_secrets=ORDERS_SECRETS, never_in_config_map=ORDERS_SECRETS,
        key_files=("ORDERS_WECHATPAY_MERCHANT_KEY",), key_file_map="ORDERS_WECHATPAY_PLATFORM_KEYS")
    settings = _as_the_service_reads(OrdersSettings, {**plain, "ORDERS_WECHATPAY_APIV3_KEY": "k" * 32})
    if not settings.calls_configured:
        problems.append("WeChat Pay calls would be off (calls_configured is false)")
    return problems + _merchant_value_problems("ORDERS_WECHATPAY", settings.wechatpay_notify_url, NOTIFY_PATH,
                                               settings.wechatpay_base_url, settings.wechatpay_mchid, settings.wechatpay_appid)


@pytest.mark.parametrize("overlay", k8s.OVERLAYS)
def test_orders_gets_every_wechatpay_setting(objects, overlay):
    assert {"ORDERS_WECHATPAY_BASE_URL", "ORDERS_WECHATPAY_NOTIFY_URL", "ORDERS_WECHATPAY_MERCHANT_KEY",
            "ORDERS_WECHATPAY_PLATFORM_KEYS", "ORDERS_WECHATPAY_APIV3_KEY"} <= _orders_required()
    assert orders_wechatpay_problems(objects[overlay]) == []
    # the non-secret ones are the overlay's own (ConfigMap), the notify URL differs per environment
    env = k8s.container_env(objects[overlay], one(objects[overlay], "Deployment", "orders")["spec"]["template"]["spec"]["containers"][0])
    assert env["ORDERS_WECHATPAY_NOTIFY_URL"][0] == env["ORDERS_WECHATPAY_MCHID"][0] == "configmap"
    assert env["ORDERS_WECHATPAY_MERCHANT_KEY"] == ("value", KEYS_DIR + "apiclient_key.pem")


def test_overlays_set_their_own_notify_url(objects):
    urls = {o: k8s.container_env(objects[o], one(objects[o], "Deployment", "orders")["spec"]["template"]["spec"]["containers"][0])
            ["ORDERS_WECHATPAY_NOTIFY_URL"][1] for o in k8s.OVERLAYS}
    assert len(set(urls.values())) == len(k8s.OVERLAYS), urls


def test_a_missing_or_misplaced_orders_wechatpay_setting_is_caught(objects):
    objs = copy.deepcopy(objects["prod"])
    (cm,) = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("orders-wechatpay")]
    del cm["data"]["ORDERS_WECHATPAY_NOTIFY_URL"]
    cm["data"]["ORDERS_WECHATPAY_APIV3_KEY"] = "committed-by-mistake-32-bytes-xx"
    cm["data"]["ORDERS_WECHATPAY_PLATFORM_KEYS"] = json.dumps({"PUB_KEY_ID_1": "/var/run/secrets/wechatpay/other.pem"})
    problems = orders_wechatpay_problems(objs)
    assert "ORDERS_WECHATPAY_NOTIFY_URL: not set" in problems
    assert "ORDERS_WECHATPAY_APIV3_KEY: a secret in a ConfigMap" in problems
    assert any(p.startswith("platform key PUB_KEY_ID_1: /var/run/secrets/wechatpay/other.pem is not a file mounted") for p in problems)
    # and a ConfigMap an overlay forgot is reported by the lint
    objs.remove(cm)
    assert any("reads ConfigMap orders-wechatpay" in p and "which is not here" in p for p in k8s.lint(objs))


# ---- every service's own keys ---------------------------------------------------------------

def _settings_type(svc: str):
    import importlib

    from shared.settings import CommonSettings

    module = importlib.import_module(f"services.{svc}.settings")
    (found,) = [v for v in vars(module).values()
                if isinstance(v, type) and issubclass(v, CommonSettings) and v is not CommonSettings
                and v.__module__ == module.__name__]
    return found


def required_secrets(svc: str) -> set[str]:
    """The service's own secret settings (`repr=False`) without a default: it refuses to start
    without them (services/<svc>/settings.py), so a new one is required here too without editing
    this test. The identity key ring is common to every service (FENXIAO_IDENTITY_*, envFrom)."""
    from shared.settings import CommonSettings

    settings = _settings_type(svc)
    prefix = settings.model_config.get("env_prefix", "")
    return {(f.validation_alias or f"{prefix}{name}".upper()) for name, f in settings.model_fields.items()
            if name not in CommonSettings.model_fields and not f.repr and f.get_default(call_default_factory=True) == ""}


def secret_problems(objs: list[dict]) -> list[str]:
    """A service's required secret that its server would not get from its own Secret, one by one
    (a pod without it must not start: CreateContainerConfigError), or that a ConfigMap carries."""
    problems = []
    cms = k8s.config_maps(objs)
    for svc in DEPLOYED:
        (container,) = one(objs, "Deployment", svc)["spec"]["template"]["spec"]["containers"]
        env = k8s.container_env(objs, container)
        for n in sorted(required_secrets(svc)):
            if env.get(n) != ("secret", f"{svc}-app/{n}"):
                problems.append(f"{svc}: {n} is not named from the {svc}-app Secret ({env.get(n, ('unset',))[0]})")
        for source in container.get("envFrom", []):
            for n in cms.get(source.get("configMapRef", {}).get("name"), {}):
                if n in required_secrets(svc):
                    problems.append(f"{svc}: {n}: a secret in a ConfigMap")
    return problems


def test_the_crypto_shredding_master_keys_are_required_secrets():
    assert {"REFERRAL_CODE_SECRET", "REFERRAL_PERSONAL_DATA_KEY"} <= required_secrets("referral")
    assert "PAYOUT_IDENTITY_MASTER_KEY" in required_secrets("payout")
    for svc in DEPLOYED:  # and what generate.py names is what the service needs
        assert required_secrets(svc) <= set(generate.BY_NAME[svc].secret_env), svc


@pytest.mark.parametrize("overlay", k8s.OVERLAYS)
def test_every_service_gets_its_required_secrets_from_its_own_secret(objects, overlay):
    assert secret_problems(objects[overlay]) == []


def test_a_missing_or_misplaced_master_key_is_caught(objects):
    objs = copy.deepcopy(objects["prod"])
    c = one(objs, "Deployment", "payout")["spec"]["template"]["spec"]["containers"][0]
    c["env"] = [e for e in c["env"] if e["name"] != "PAYOUT_IDENTITY_MASTER_KEY"]
    r = one(objs, "Deployment", "referral")["spec"]["template"]["spec"]["containers"][0]
    (e,) = [e for e in r["env"] if e["name"] == "REFERRAL_PERSONAL_DATA_KEY"]
    e["valueFrom"]["secretKeyRef"]["name"] = "orders-app"
    assert sorted(secret_problems(objs)) == [
        "payout: PAYOUT_IDENTITY_MASTER_KEY is not named from the payout-app Secret (unset)",
        "referral: REFERRAL_PERSONAL_DATA_KEY is not named from the referral-app Secret (secret)"]


# ---- payout's WeChat transfer settings ------------------------------------------------------

def _payout_required() -> set[str]:
    """Every WeChat transfer setting of payout without a usable production default
    (services/payout/settings.py): empty, or the local stand-in / localhost. A new one is required
    here too without editing this test."""
    from services.payout.settings import PayoutSettings

    out = set()
    for name, f in PayoutSettings.model_fields.items():
        default = f.get_default(call_default_factory=True)
        if name.startswith("wechat_") and (default in ("", None) or "127.0.0.1" in str(default)):
            out.add(f"PAYOUT_{name.upper()}")
    return out


PAYOUT_SECRETS = {"PAYOUT_WECHAT_APIV3_KEY"}  # only from the payout-app Secret (secrets.sh)


def payout_wechatpay_problems(objs: list[dict]) -> list[str]:
    """What keeps the rendered payout server from paying through WeChat Pay and verifying its
    transfer notices: a required setting unset, a secret outside its Secret, a key file that is not
    mounted, a value the service would refuse or that cannot work in a cluster."""
    from services.payout.api import notify
    from services.payout.settings import PayoutSettings

    (notify_path,) = [r.path for r in notify.router.routes if r.path.endswith("/transfer-notify")]
    problems, plain = _wechat_deployment_problems(
        objs, "payout", required=_payout_required(), app_secrets=PAYOUT_SECRETS,
        never_in_config_map=PAYOUT_SECRETS | required_secrets("payout"),
        key_files=("PAYOUT_WECHAT_MERCHANT_KEY", "PAYOUT_WECHAT_PLATFORM_KEY"), key_file_map="PAYOUT_WECHAT_PLATFORM_KEYS")
    settings = _as_the_service_reads(PayoutSettings, {**plain, "PAYOUT_WECHAT_APIV3_KEY": "k" * 32})
    if not settings.transfer_configured:
        problems.append("transfers would be off (transfer_configured is false)")
    return problems + _merchant_value_problems("PAYOUT_WECHAT", settings.wechat_notify_url, notify_path,
                                               settings.wechat_base_url, settings.wechat_mchid, settings.wechat_appid)


@pytest.mark.parametrize("overlay", k8s.OVERLAYS)
def test_payout_gets_every_wechat_transfer_setting(objects, overlay):
    assert {"PAYOUT_WECHAT_BASE_URL", "PAYOUT_WECHAT_NOTIFY_URL", "PAYOUT_WECHAT_MCHID", "PAYOUT_WECHAT_APPID",
            "PAYOUT_WECHAT_MERCHANT_SERIAL", "PAYOUT_WECHAT_PLATFORM_SERIAL", "PAYOUT_WECHAT_MERCHANT_KEY",
            "PAYOUT_WECHAT_PLATFORM_KEY", "PAYOUT_WECHAT_APIV3_KEY"} <= _payout_required()
    assert payout_wechatpay_problems(objects[overlay]) == []
    # the non-secret ones are the overlay's own (ConfigMap), the secret ones from payout-app / files
    env = k8s.container_env(objects[overlay], one(objects[overlay], "Deployment", "payout")["spec"]["template"]["spec"]["containers"][0])
    for n in ("PAYOUT_WECHAT_BASE_URL", "PAYOUT_WECHAT_NOTIFY_URL", "PAYOUT_WECHAT_MCHID", "PAYOUT_WECHAT_APPID",
              "PAYOUT_WECHAT_MERCHANT_SERIAL", "PAYOUT_WECHAT_PLATFORM_SERIAL"):
        assert env[n][0] == "configmap", n
    assert env["PAYOUT_WECHAT_APIV3_KEY"] == ("secret", "payout-app/PAYOUT_WECHAT_APIV3_KEY")
    assert env["PAYOUT_WECHAT_MERCHANT_KEY"] == ("value", KEYS_DIR + "apiclient_key.pem")
    assert env["PAYOUT_WECHAT_PLATFORM_KEY"] == ("value", KEYS_DIR + "pub_key.pem")


def test_overlays_set_payouts_own_notify_url(objects):
    urls = {o: k8s.container_env(objects[o], one(objects[o], "Deployment", "payout")["spec"]["template"]["spec"]["containers"][0])
            ["PAYOUT_WECHAT_NOTIFY_URL"][1] for o in k8s.OVERLAYS}
    assert len(set(urls.values())) == len(k8s.OVERLAYS), urls


def test_a_missing_or_misplaced_payout_wechat_setting_is_caught(objects):
    objs = copy.deepcopy(objects["prod"])
    (cm,) = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("payout-wechatpay")]
    del cm["data"]["PAYOUT_WECHAT_NOTIFY_URL"]
    del cm["data"]["PAYOUT_WECHAT_PLATFORM_SERIAL"]
    cm["data"]["PAYOUT_WECHAT_APIV3_KEY"] = "committed-by-mistake-32-bytes-xx"
    cm["data"]["PAYOUT_IDENTITY_MASTER_KEY"] = "a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U="
    cm["data"]["PAYOUT_WECHAT_PLATFORM_KEYS"] = json.dumps({"PUB_KEY_ID_1": "/var/run/secrets/wechatpay/other.pem"})
    problems = payout_wechatpay_problems(objs)
    assert "PAYOUT_WECHAT_NOTIFY_URL: not set" in problems and "PAYOUT_WECHAT_PLATFORM_SERIAL: not set" in problems
    assert "PAYOUT_WECHAT_APIV3_KEY: a secret in a ConfigMap" in problems
    assert "PAYOUT_IDENTITY_MASTER_KEY: a secret in a ConfigMap" in problems
    assert any(p.startswith("platform key PUB_KEY_ID_1: /var/run/secrets/wechatpay/other.pem is not a file mounted") for p in problems)
    assert any(p.startswith("PAYOUT_WECHAT_NOTIFY_URL: 'http://127.0.0.1") for p in problems)  # the default would be used
    # and a ConfigMap an overlay forgot is reported by the lint
    objs.remove(cm)
    assert any("reads ConfigMap payout-wechatpay" in p and "which is not here" in p for p in k8s.lint(objs))
