"""Writes the per-service and per-topic manifests of deploy/k8s/base from one table, so that
four services stay alike and the Kafka objects follow shared/topics.py:

    uv run --frozen python deploy/k8s/generate.py          # rewrite
    uv run --frozen python deploy/k8s/generate.py --check  # exit 1 if a file is out of date

tests/deploy/test_manifests.py runs --check, so a new topic or a changed partition count cannot
be forgotten here. The rest of deploy/k8s (Kafka cluster, PostgreSQL, observability, overlays)
is written by hand."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
BASE = Path(__file__).resolve().parent / "base"
sys.path.insert(0, str(ROOT))
if __name__ == "__main__":
    # production names, whatever the caller's shell says; only when run as the command: imported
    # (tests/deploy reads SERVICES), it must not change the importer's environment, whose
    # subprocesses would then read and write topics outside the test session's namespace
    os.environ.pop("FENXIAO_TOPIC_NAMESPACE", None)

from shared import topics  # noqa: E402

KAFKA_CLUSTER = "fenxiao-kafka"
PG_CLUSTER = "fenxiao-pg"
PART_OF = "fenxiao"


@dataclass(frozen=True)
class Svc:
    name: str
    port: int
    consumes: tuple[str, ...]        # topics its projections (and start-up readers) read
    wechat: bool                     # calls WeChat's APIs through the egress proxy
    cpu: str = "250m"
    memory: str = "256Mi"
    memory_limit: str = "512Mi"
    #: False: one replica, Recreate (a service whose consumers must not overlap); no HPA
    scales_out: bool = True
    key_files: tuple[tuple[str, str], ...] = ()  # (setting, file) mounted from <name>-wechatpay-keys
    #: further files of <name>-wechatpay-keys that a setting names in its JSON (orders' platform keys)
    extra_key_files: tuple[str, ...] = ()
    settings: tuple[tuple[str, str], ...] = ()   # non-secret settings of its own, the same in every overlay
    #: its own ConfigMap (envFrom): made by kustomize's configMapGenerator in base/kustomization.yaml,
    #: each overlay merging in its environment's non-secret values (overlays/<env>/<config_map>.env)
    config_map: str | None = None
    #: settings its server must get from <name>-app (secrets.sh): named one by one, so that a pod
    #: without them does not start (CreateContainerConfigError) instead of running unconfigured
    secret_env: tuple[str, ...] = ()
    calls: tuple[str, ...] = ()                  # services whose HTTP APIs it calls (the console)


SERVICES = (
    # its promoter-code key and crypto-shredding's master key from referral-app (the service refuses
    # to start without either)
    Svc("referral", 8101, (topics.REFERRAL_EVENTS, topics.ORDER_EVENTS), wechat=True,
        secret_env=("REFERRAL_CODE_SECRET", "REFERRAL_PERSONAL_DATA_KEY")),
    # WeChat Pay calls and notices: the merchant's private key and WeChat Pay's public key as files
    # (orders-wechatpay-keys), the APIv3 key from orders-app, and the merchant, app, serials and
    # notify URL from the overlay's ConfigMap orders-wechatpay (docs/deploy.md)
    Svc("orders", 8102, (topics.REFERRAL_EVENTS,), wechat=True,
        key_files=(("ORDERS_WECHATPAY_MERCHANT_KEY", "apiclient_key.pem"),), extra_key_files=("pub_key.pem",),
        config_map="orders-wechatpay", secret_env=("ORDERS_WECHATPAY_APIV3_KEY",)),
    # scales out by partitions (order workers share the order partitions; reference data has its
    # own consumer group): the same HPA as the others
    Svc("commission", 8103, (topics.REFERRAL_EVENTS, topics.ORDER_EVENTS, topics.PAYOUT_EVENTS, topics.COMMISSION_EVENTS),
        wechat=False, cpu="500m", memory="512Mi", memory_limit="1Gi"),
    Svc("payout", 8104, (topics.COMMISSION_EVENTS, topics.PAYOUT_EVENTS), wechat=True,
        key_files=(("PAYOUT_WECHAT_MERCHANT_KEY", "apiclient_key.pem"), ("PAYOUT_WECHAT_PLATFORM_KEY", "pub_key.pem")),
        # WeChat Pay merchant transfers: as orders, the two key files from payout-wechatpay-keys, the
        # merchant, app, serials and notify URL from the overlay's ConfigMap payout-wechatpay, the
        # APIv3 key and the payee identities' master key (crypto-shredding) from payout-app
        config_map="payout-wechatpay", secret_env=("PAYOUT_IDENTITY_MASTER_KEY", "PAYOUT_WECHAT_APIV3_KEY")),
    # notices, live SSE streams, subscribe messages (WeChat), boards
    Svc("engagement", 8105, (topics.COMMISSION_EVENTS, topics.PAYOUT_EVENTS, topics.REFERRAL_EVENTS, topics.ORDER_EVENTS),
        wechat=True),
    # the operators' console: its own projection, and the other services' admin APIs over HTTP
    Svc("console", 8106, (topics.ORDER_EVENTS, topics.COMMISSION_EVENTS, topics.REFERRAL_EVENTS), wechat=False,
        calls=("referral", "commission", "payout"),
        settings=(("CONSOLE_REFERRAL_URL", "http://referral"), ("CONSOLE_COMMISSION_URL", "http://commission"),
                  ("CONSOLE_PAYOUT_URL", "http://payout"), ("CONSOLE_COOKIE_SECURE", "true"))),
)
BY_NAME = {s.name: s for s in SERVICES}


def labels(svc: str, component: str) -> dict:
    return {"app.kubernetes.io/name": svc, "app.kubernetes.io/component": component, "app.kubernetes.io/part-of": PART_OF}


def common(svc: str) -> dict:
    """Labels of what serves every pod of the service (ServiceAccount, NetworkPolicy): no
    component, so that they are applied before the migration Jobs (docs/deploy.md)."""
    return {"app.kubernetes.io/name": svc, "app.kubernetes.io/part-of": PART_OF}


def selector(svc: str, component: str = "server") -> dict:
    return {"app.kubernetes.io/name": svc, "app.kubernetes.io/component": component}


POD_SECURITY = {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532,
                "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                      "capabilities": {"drop": ["ALL"]}}


def env(s: Svc) -> list[dict]:
    """Credentials from operator-made Secrets (Strimzi's KafkaUser, the PostgreSQL role's
    basic-auth Secret that CloudNativePG reconciles into the role) and the service's own Secret."""
    out = [
        {"name": "PORT", "value": str(s.port)},
        {"name": "PGUSER", "valueFrom": {"secretKeyRef": {"name": f"{s.name}-pg", "key": "username"}}},
        {"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {"name": f"{s.name}-pg", "key": "password"}}},
        # TLS verified against the cluster's CA (CloudNativePG's <cluster>-ca Secret, mounted below)
        {"name": "DATABASE_URL", "value": f"postgresql://$(PGUSER):$(PGPASSWORD)@{PG_CLUSTER}-rw:5432/fenxiao"
                                          "?sslmode=verify-full&sslrootcert=/etc/fenxiao/pg-ca/ca.crt"},
        {"name": "KAFKA_SASL_USERNAME", "value": s.name},
        {"name": "KAFKA_SASL_PASSWORD", "valueFrom": {"secretKeyRef": {"name": s.name, "key": "password"}}},
        {"name": "OTEL_SERVICE_NAME", "value": f"fenxiao-{s.name}"},
    ]
    out += [{"name": k, "value": v} for k, v in s.settings]
    out += [{"name": k, "value": f"/var/run/secrets/wechatpay/{f}"} for k, f in s.key_files]
    return out


def volumes(s: Svc) -> tuple[list[dict], list[dict]]:
    vols = [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
            {"name": "kafka-ca", "secret": {"secretName": f"{KAFKA_CLUSTER}-cluster-ca-cert", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"name": "pg-ca", "secret": {"secretName": f"{PG_CLUSTER}-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]
    mounts = [{"name": "tmp", "mountPath": "/tmp"}, {"name": "kafka-ca", "mountPath": "/var/run/secrets/kafka", "readOnly": True},
              {"name": "pg-ca", "mountPath": "/etc/fenxiao/pg-ca", "readOnly": True}]
    if s.key_files:
        files = [f for _, f in s.key_files] + list(s.extra_key_files)
        vols.append({"name": "wechatpay-keys", "secret": {"secretName": f"{s.name}-wechatpay-keys",
                                                          "items": [{"key": f, "path": f} for f in files]}})
        mounts.append({"name": "wechatpay-keys", "mountPath": "/var/run/secrets/wechatpay", "readOnly": True})
    return vols, mounts


def container(s: Svc, command: list[str], *, server: bool) -> dict:
    _, mounts = volumes(s)
    c = {
        "name": s.name,
        "image": "fenxiao",
        "command": command,
        "envFrom": [{"configMapRef": {"name": "fenxiao-common"}}]
                   + ([{"configMapRef": {"name": s.config_map}}] if s.config_map else [])
                   + [{"secretRef": {"name": f"{s.name}-app"}}],
        "env": env(s) + ([{"name": "HTTPS_PROXY", "valueFrom": {"configMapKeyRef": {"name": "fenxiao-common", "key": "WECHAT_EGRESS_PROXY"}}}]
                         if s.wechat and server else [])
               + ([{"name": k, "valueFrom": {"secretKeyRef": {"name": f"{s.name}-app", "key": k}}} for k in s.secret_env]
                  if server else []),
        "resources": {"requests": {"cpu": s.cpu, "memory": s.memory}, "limits": {"memory": s.memory_limit}},
        "securityContext": CONTAINER_SECURITY,
        "volumeMounts": mounts,
    }
    if server:
        c["ports"] = [{"name": "http", "containerPort": s.port}]
        # start-up includes migrations and the outbox drain: up to 5 minutes before liveness applies
        c["startupProbe"] = {"httpGet": {"path": "/livez", "port": "http"}, "periodSeconds": 5, "failureThreshold": 60}
        # connected to Kafka and PostgreSQL, every owned partition positioned and none halted
        c["readinessProbe"] = {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5, "timeoutSeconds": 3,
                               "failureThreshold": 3}
        # the event loop still turns (shared.service.Heartbeat); a blocked loop also times out here
        c["livenessProbe"] = {"httpGet": {"path": "/livez", "port": "http"}, "periodSeconds": 10, "timeoutSeconds": 5,
                              "failureThreshold": 3}
        # let endpoints and the gateway drop this pod before SIGTERM starts the graceful stop
        c["lifecycle"] = {"preStop": {"sleep": {"seconds": 5}}}
    return c


def pod_spec(s: Svc, containers: list[dict], **extra) -> dict:
    vols, _ = volumes(s)
    return {"serviceAccountName": s.name, "automountServiceAccountToken": False, "securityContext": POD_SECURITY,
            "containers": containers, "volumes": vols, **extra}


def service_objects(s: Svc) -> list[dict]:
    objs: list[dict] = []
    objs.append({"apiVersion": "v1", "kind": "ServiceAccount",
                 "metadata": {"name": s.name, "labels": common(s.name)}, "automountServiceAccountToken": False})
    spread = [{"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway",
               "labelSelector": {"matchLabels": selector(s.name)}}
              for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")]
    deploy = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": s.name, "labels": labels(s.name, "server")},
        "spec": {
            "replicas": 2 if s.scales_out else 1,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector(s.name)},
            "strategy": ({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}} if s.scales_out
                         else {"type": "Recreate"}),
            "template": {
                "metadata": {"labels": labels(s.name, "server")},
                "spec": pod_spec(s, [container(s, ["python", "-m", f"services.{s.name}.main"], server=True)],
                                 # preStop 5 s + uvicorn's graceful stop: the broker leaves its group,
                                 # the relay and projectors finish their batch (positions commit in PostgreSQL)
                                 terminationGracePeriodSeconds=45, topologySpreadConstraints=spread),
            },
        },
    }
    if not s.scales_out:
        deploy["metadata"]["annotations"] = {
            "fenxiao.io/scaling": "one replica; Recreate so that two never overlap during a rollout"}
    objs.append(deploy)
    objs.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": s.name, "labels": labels(s.name, "server")},
                 "spec": {"selector": selector(s.name), "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}})
    objs.append({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                 "metadata": {"name": s.name, "labels": labels(s.name, "server")},
                 "spec": ({"minAvailable": 1} if s.scales_out else {"maxUnavailable": 1})
                 | {"selector": {"matchLabels": selector(s.name)}}})
    if s.scales_out:
        objs.append({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": s.name, "labels": labels(s.name, "server")},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": s.name},
                "minReplicas": 2,
                # a consumer group never uses more members than partitions
                "maxReplicas": topics.PARTITIONS,
                "metrics": [{"type": "External", "external": {
                    "metric": {"name": "fenxiao_consumer_lag", "selector": {"matchLabels": {"service": s.name}}},
                    "target": {"type": "AverageValue", "averageValue": "1000"}}}],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300,
                                           "policies": [{"type": "Pods", "value": 1, "periodSeconds": 120}]}},
            },
        })
    objs.append(network_policy(s))
    objs.append(migration_job(s))
    if s.name == "commission":
        objs.append(audit_replay(s))
    return objs


def audit_replay(s: Svc) -> dict:
    """Nightly: every promoter's balance rebuilt from the log and compared with the live one
    (services/commission/replay.py). Exit 1 on a difference fails the Job, which is alerted on
    (observability/monitoring.yaml). Read-only in PostgreSQL and Kafka."""
    c = container(s, ["python", "-m", "services.commission.replay"], server=False)
    c["resources"] = {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}}
    return {
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "audit-replay", "labels": labels(s.name, "audit-replay")},
        "spec": {"schedule": "17 3 * * *", "timeZone": "Asia/Shanghai", "concurrencyPolicy": "Forbid",
                 "startingDeadlineSeconds": 3600, "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 5,
                 "jobTemplate": {"metadata": {"labels": labels(s.name, "audit-replay")},
                                 "spec": {"backoffLimit": 0, "activeDeadlineSeconds": 4 * 3600,
                                          "template": {"metadata": {"labels": labels(s.name, "audit-replay")},
                                                       "spec": pod_spec(s, [c], restartPolicy="Never")}}}},
    }


def network_policy(s: Svc) -> dict:
    def pods(match: dict, port: int, protocol: str = "TCP") -> dict:
        return {"to": [{"podSelector": {"matchLabels": match}}], "ports": [{"protocol": protocol, "port": port}]}

    egress = [
        {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                 "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
         "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
        pods({"strimzi.io/cluster": KAFKA_CLUSTER, "strimzi.io/kind": "Kafka"}, 9093),
        pods({"cnpg.io/cluster": PG_CLUSTER}, 5432),
        pods({"app.kubernetes.io/name": "otel-collector"}, 4318),
    ]
    if s.wechat:
        # WeChat's APIs only through the egress proxy (docs/deploy.md): no direct internet egress
        egress.append({"to": [{"namespaceSelector": {"matchLabels": {"fenxiao.io/egress-proxy": "true"}},
                               "podSelector": {"matchLabels": {"app.kubernetes.io/name": "egress-proxy"}}}],
                       "ports": [{"protocol": "TCP", "port": 3128}]})
    for callee in s.calls:
        egress.append(pods(selector(callee), BY_NAME[callee].port))
    callers = [c.name for c in SERVICES if s.name in c.calls]
    ingress = [{"from": [{"namespaceSelector": {"matchLabels": {"fenxiao.io/gateway": "true"}}},
                         {"namespaceSelector": {"matchLabels": {"fenxiao.io/monitoring": "true"}}}]
                        + [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": c}}} for c in callers],
                "ports": [{"protocol": "TCP", "port": "http"}]}]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": s.name, "labels": common(s.name)},
            # every pod of the service: server, migration Job, audit CronJob
            "spec": {"podSelector": {"matchLabels": {"app.kubernetes.io/name": s.name}},
                     "policyTypes": ["Ingress", "Egress"], "ingress": ingress, "egress": egress}}


def migration_job(s: Svc) -> dict:
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": f"{s.name}-migrate", "labels": labels(s.name, "migration"),
                     # Argo CD / Flux run it before the Deployments; with kubectl see docs/deploy.md
                     "annotations": {"argocd.argoproj.io/hook": "PreSync",
                                     "argocd.argoproj.io/hook-delete-policy": "BeforeHookCreation"}},
        "spec": {"backoffLimit": 2, "activeDeadlineSeconds": 900, "ttlSecondsAfterFinished": 86400,
                 "template": {"metadata": {"labels": labels(s.name, "migration")},
                              "spec": pod_spec(s, [container(s, ["python", "-m", "shared.migrate", s.name], server=False)],
                                               restartPolicy="Never")}},
    }


def topic_objects() -> list[dict]:
    objs = []
    for base in topics.ALL_TOPICS:
        for name in (base, topics.dead_letter(base)):
            objs.append({
                "apiVersion": "kafka.strimzi.io/v1beta2", "kind": "KafkaTopic",
                "metadata": {"name": name, "labels": {"strimzi.io/cluster": KAFKA_CLUSTER, "app.kubernetes.io/part-of": PART_OF}},
                "spec": {"topicName": name, "partitions": topics.PARTITIONS, "replicas": 3,
                         # the log is the system of record: never deleted by age or size
                         "config": {"retention.ms": -1, "retention.bytes": -1, "cleanup.policy": "delete",
                                    "min.insync.replicas": 2}},
            })
    return objs


def acl(kind: str, name: str, ops: list[str], pattern: str = "literal") -> dict:
    return {"resource": {"type": kind, "name": name, "patternType": pattern}, "operations": ops}


def user_objects() -> list[dict]:
    """Each service writes only its own stream and the dead-letter topics of what it reads
    (a record it cannot read is parked next to where it came from); it reads what it consumes
    and uses only consumer groups named `<service>.…` (shared.topics.group)."""
    objs = []
    for s in SERVICES:
        own = topics.OWNER_TOPIC[s.name]
        acls = [acl("topic", own, ["Write", "Describe"])]
        acls += [acl("topic", topics.dead_letter(t), ["Write", "Describe"]) for t in sorted(set(s.consumes))]
        # DescribeConfigs: at start a service checks that what it reads keeps every event
        # (shared.topics.ensure_topics with FENXIAO_CREATE_TOPICS=false)
        acls += [acl("topic", t, ["Read", "Describe", "DescribeConfigs"]) for t in sorted(set(s.consumes) | {own})]
        acls.append(acl("group", f"{s.name}.", ["Read"], "prefix"))
        # idempotent producers (docs/security.md); Kafka 3 needs only Write, older brokers this
        acls.append({"resource": {"type": "cluster"}, "operations": ["IdempotentWrite"]})
        objs.append({"apiVersion": "kafka.strimzi.io/v1beta2", "kind": "KafkaUser",
                     "metadata": {"name": s.name, "labels": {"strimzi.io/cluster": KAFKA_CLUSTER, "app.kubernetes.io/part-of": PART_OF}},
                     "spec": {"authentication": {"type": "scram-sha-512"},
                              "authorization": {"type": "simple", "acls": acls}}})
    return objs


HEADER = "# Generated by deploy/k8s/generate.py from its service table and shared/topics.py: edit those, not this.\n"


def dump(objs: list[dict]) -> str:
    return HEADER + "---\n".join(yaml.safe_dump(o, sort_keys=False, width=120) for o in objs)


def default_deny() -> dict:
    """Nothing reaches fenxiao's pods, and they reach nothing, unless a policy allows it: each
    service's own policy opens Kafka, PostgreSQL, DNS, the OTel collector and, for the services
    that call WeChat, the egress proxy. (By name: the operators' pods may carry our labels.)"""
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "default-deny", "labels": {"app.kubernetes.io/part-of": PART_OF}},
            "spec": {"podSelector": {"matchExpressions": [{"key": "app.kubernetes.io/name", "operator": "In",
                                                           "values": [s.name for s in SERVICES] + ["otel-collector"]}]},
                     "policyTypes": ["Ingress", "Egress"]}}


def files() -> dict[Path, str]:
    out = {BASE / "kafka" / "topics.yaml": dump(topic_objects()),
           BASE / "kafka" / "users.yaml": dump(user_objects()),
           BASE / "apps" / "default-deny.yaml": dump([default_deny()]),
           BASE / "apps" / "kustomization.yaml": HEADER + yaml.safe_dump(
               {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                "resources": ["default-deny.yaml"] + [f"{s.name}.yaml" for s in SERVICES]}, sort_keys=False)}
    for s in SERVICES:
        out[BASE / "apps" / f"{s.name}.yaml"] = dump(service_objects(s))
    return out


def main(argv: list[str]) -> int:
    stale = []
    for path, text in files().items():
        if "--check" in argv:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path.relative_to(ROOT)))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print("out of date (run deploy/k8s/generate.py):", *stale, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
