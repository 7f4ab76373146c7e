"""Offline Kubernetes manifest checks: render with kustomize, validate with kubeconform against
the Kubernetes and CRD JSON schemas (deploy/validate/setup.sh builds and caches them), and lint
what schemas cannot see (selectors that select nothing, Pod Security, probes)."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Iterable

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SETUP = ROOT / "deploy" / "validate" / "setup.sh"
OVERLAYS = ("dev", "prod")


def tools_dir() -> Path | None:
    """The validation cache, if complete; never fetches anything."""
    r = subprocess.run(["bash", str(SETUP), "--offline"], capture_output=True, text=True)
    return Path(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else None


def render(tools: Path, path: Path) -> str:
    r = subprocess.run([str(tools / "bin" / "kustomize"), "build", str(path)], capture_output=True, text=True)
    if r.returncode:
        raise AssertionError(f"kustomize build {path} failed:\n{r.stderr}")
    return r.stdout


def docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def dump(objs: Iterable[dict]) -> str:
    return "---\n".join(yaml.safe_dump(o, sort_keys=False) for o in objs)


def kubeconform(tools: Path, text: str) -> dict:
    """-strict: unknown fields fail. Returns {"summary": ..., "problems": [...]}, every resource
    with a status other than valid (a resource with no schema counts: nothing is skipped)."""
    r = subprocess.run(
        [str(tools / "bin" / "kubeconform"), "-strict", "-summary", "-output", "json",
         "-schema-location", str(tools / "schemas" / "k8s" / "{{ .ResourceKind }}{{ .KindSuffix }}.json"),
         "-schema-location", str(tools / "schemas" / "crd" / "{{ .Group }}" / "{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json"),
         "-"],
        input=text, capture_output=True, text=True, env={**os.environ, "HOME": os.environ.get("HOME", "/root")})
    out = json.loads(r.stdout)
    problems = [f"{x['kind']}/{x['name']}: {x['status']}: {x.get('msg', '')}" for x in out.get("resources", [])
                if x["status"] != "statusValid"]
    return {"summary": out["summary"], "problems": problems, "exit": r.returncode}


# ---- what schemas cannot see -------------------------------------------------------------

WORKLOADS = ("Deployment", "Job", "CronJob", "StatefulSet", "DaemonSet")


def pod_template(obj: dict) -> dict | None:
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]
    if obj["kind"] in WORKLOADS:
        return obj["spec"]["template"]
    return None


def matches(selector: dict | None, labels: dict) -> bool:
    """A LabelSelector (matchLabels + matchExpressions) against labels; empty selects all."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or ():
        have, key, values = labels, e["key"], e.get("values") or []
        op = e["operator"]
        if (op == "In" and have.get(key) not in values) or (op == "NotIn" and have.get(key) in values) \
                or (op == "Exists" and key not in have) or (op == "DoesNotExist" and key in have):
            return False
    return True


def config_maps(objs: list[dict]) -> dict[str, dict[str, str]]:
    return {o["metadata"]["name"]: o.get("data") or {} for o in objs if o["kind"] == "ConfigMap"}


def container_env(objs: list[dict], container: dict) -> dict[str, tuple[str, str]]:
    """What each environment variable of `container` is set from, as the kubelet resolves it (a
    later `envFrom` source wins over an earlier one, `env` over all): ("value", text),
    ("configmap", text) or ("secret", "<secret>/<key>"). Whole Secrets (`envFrom: secretRef`) are
    made outside git, so their keys are unknown here: only variables named one by one count."""
    cms = config_maps(objs)
    out: dict[str, tuple[str, str]] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            out.update({k: ("configmap", v) for k, v in cms.get(source["configMapRef"]["name"], {}).items()})
    for e in container.get("env", []):
        ref = e.get("valueFrom", {})
        if "value" in e:
            out[e["name"]] = ("value", e["value"])
        elif "secretKeyRef" in ref:
            out[e["name"]] = ("secret", f"{ref['secretKeyRef']['name']}/{ref['secretKeyRef']['key']}")
        elif "configMapKeyRef" in ref:
            cm = ref["configMapKeyRef"]
            if cm["key"] in cms.get(cm["name"], {}):
                out[e["name"]] = ("configmap", cms[cm["name"]][cm["key"]])
    return out


def lint(objs: list[dict]) -> list[str]:
    problems: list[str] = []
    by_kind: dict[str, list[dict]] = {}
    for o in objs:
        by_kind.setdefault(o["kind"], []).append(o)
    name = lambda o: f"{o['kind']}/{o['metadata']['name']}"  # noqa: E731
    deployments = {d["metadata"]["name"]: d for d in by_kind.get("Deployment", [])}
    server_pods = [d["spec"]["template"]["metadata"].get("labels", {}) for d in deployments.values()]
    all_pods = [pod_template(o)["metadata"].get("labels", {}) for o in objs if pod_template(o)]

    for o in by_kind.get("Secret", []):
        problems.append(f"{name(o)}: Secrets are made outside git (deploy/k8s/secrets.sh), never committed")
    cms = config_maps(objs)
    for o in objs:  # a ConfigMap a pod reads must be rendered (an overlay may not forget one)
        for c in (pod_template(o) or {}).get("spec", {}).get("containers", []):
            refs = [(f["configMapRef"]["name"], None, f["configMapRef"].get("optional")) for f in c.get("envFrom", [])
                    if "configMapRef" in f]
            refs += [(r["name"], r["key"], r.get("optional")) for e in c.get("env", [])
                     if (r := e.get("valueFrom", {}).get("configMapKeyRef"))]
            for cm, key, optional in refs:
                if not optional and (cm not in cms or (key is not None and key not in cms[cm])):
                    problems.append(f"{name(o)} container {c['name']}: reads ConfigMap {cm}"
                                    + (f" key {key}" if key else "") + ", which is not here")
    for d in deployments.values():
        if not matches(d["spec"]["selector"], d["spec"]["template"]["metadata"].get("labels", {})):
            problems.append(f"{name(d)}: selector does not match its pod template's labels")
    for s in by_kind.get("Service", []):
        sel = s["spec"].get("selector")
        if sel and not any(matches({"matchLabels": sel}, p) for p in server_pods):
            problems.append(f"{name(s)}: selector {sel} selects no Deployment's pods")
    for p in by_kind.get("PodDisruptionBudget", []):
        if not any(matches(p["spec"]["selector"], l) for l in server_pods):
            problems.append(f"{name(p)}: selector selects no Deployment's pods")
    for n in by_kind.get("NetworkPolicy", []):
        if not any(matches(n["spec"]["podSelector"], l) for l in all_pods) and n["metadata"]["name"] != "default-deny":
            problems.append(f"{name(n)}: podSelector selects no pods")
    for h in by_kind.get("HorizontalPodAutoscaler", []):
        ref = h["spec"]["scaleTargetRef"]
        if ref["kind"] != "Deployment" or ref["name"] not in deployments:
            problems.append(f"{name(h)}: scales {ref['kind']}/{ref['name']}, which is not here")
        elif deployments[ref["name"]]["spec"].get("strategy", {}).get("type") == "Recreate":
            problems.append(f"{name(h)}: scales a single-replica (Recreate) Deployment")
    for o in objs:
        tpl = pod_template(o)
        if tpl is None:
            continue
        spec = tpl["spec"]
        psc = spec.get("securityContext", {})
        if psc.get("runAsNonRoot") is not True:
            problems.append(f"{name(o)}: pod runAsNonRoot is not true")
        if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{name(o)}: pod seccompProfile is not RuntimeDefault")
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{name(o)}: service account token is mounted")
        tmp_volumes = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            sc = c.get("securityContext", {})
            cname = f"{name(o)} container {c['name']}"
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{cname}: allowPrivilegeEscalation is not false")
            if sc.get("capabilities", {}).get("drop") != ["ALL"]:
                problems.append(f"{cname}: does not drop ALL capabilities")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{cname}: root filesystem is writable")
            if "memory" not in c.get("resources", {}).get("limits", {}) or "cpu" not in c.get("resources", {}).get("requests", {}):
                problems.append(f"{cname}: no memory limit or cpu request")
            if c.get("image") and "fenxiao" in c["image"]:
                if not any(m["mountPath"] == "/tmp" and m["name"] in tmp_volumes for m in c.get("volumeMounts", [])):
                    problems.append(f"{cname}: no emptyDir at /tmp under a read-only root")
                if o["kind"] == "Deployment":
                    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                        if probe not in c:
                            problems.append(f"{cname}: no {probe}")
                    if "preStop" not in c.get("lifecycle", {}):
                        problems.append(f"{cname}: no preStop")
    return problems
