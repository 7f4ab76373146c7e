"""CustomResourceDefinitions -> strict JSON schemas in kubeconform's layout.

    python crd2schema.py OUT_DIR CRD.yaml...

writes OUT_DIR/<group>/<kind>_<version>.json for every served version, found by kubeconform
with `-schema-location 'OUT_DIR/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json'`.
Strict like the Kubernetes schemas' -strict set: an object that lists its properties allows no
others (a misspelled field fails) unless the CRD says x-kubernetes-preserve-unknown-fields, as
the API server itself prunes or rejects them. `x-kubernetes-int-or-string` becomes a
string-or-integer type, as the API server reads it."""
from __future__ import annotations

import json
import os
import sys

import yaml


class _Loader(yaml.SafeLoader):
    """A YAML 1.1 loader that reads the `=` (value) key some CRDs carry as a plain string."""


_Loader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


def strict(node):
    if isinstance(node, list):
        return [strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: strict(v) for k, v in node.items()}
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["oneOf"] = [{"type": "string"}, {"type": "integer"}]
    if "properties" in out and "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def main(out_dir: str, paths: list[str]) -> int:
    written = 0
    for path in paths:
        with open(path) as f:
            for doc in yaml.load_all(f, Loader=_Loader):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                spec = doc["spec"]
                group, kind = spec["group"], spec["names"]["kind"].lower()
                for version in spec["versions"]:
                    schema = (version.get("schema") or {}).get("openAPIV3Schema")
                    if not version.get("served", True) or schema is None:
                        continue
                    schema = strict(schema)
                    # the envelope every object has, whatever the CRD spells out
                    props = schema.setdefault("properties", {})
                    props.setdefault("apiVersion", {"type": "string"})
                    props.setdefault("kind", {"type": "string"})
                    props.setdefault("metadata", {"type": "object"})
                    os.makedirs(os.path.join(out_dir, group), exist_ok=True)
                    with open(os.path.join(out_dir, group, f"{kind}_{version['name']}.json"), "w") as f:
                        json.dump(schema, f)
                    written += 1
    if not written:
        print("no CRD schema written", file=sys.stderr)
        return 1
    print(f"{written} CRD schemas in {out_dir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
