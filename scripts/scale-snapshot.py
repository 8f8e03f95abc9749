#!/usr/bin/env python3
"""Writes a large cluster snapshot for scale measurements (scripts/bench-scale.sh):
the bench review's namespace (`shop`, with its LimitRange and pull secret) plus N namespaces,
each with a LimitRange, five Secrets and a ServiceAccount, and a GMSA credential spec for every
tenth. Defaults: 10 000 namespaces, so 10 000 LimitRanges, 50 000 Secrets, 10 000
ServiceAccounts, 1 000 GMSA specs.

  scripts/scale-snapshot.py [N] > snapshot.json
"""
import json
import sys

n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000


def namespace(name, team):
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {
        "kubernetes.io/metadata.name": name, "team": f"team-{team}",
        "pod-security.kubernetes.io/enforce": "restricted"}}}


def limit_range(ns):
    return {"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "limits", "namespace": ns},
            "spec": {"limits": [{"type": "Container", "default": {"ephemeral-storage": "1Gi"},
                                 "defaultRequest": {"ephemeral-storage": "512Mi"}}]}}


def secret(ns, name):
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns},
            "type": "kubernetes.io/dockerconfigjson"}


items = [namespace("shop", 0), limit_range("shop"), secret("shop", "regcred")]
for i in range(n):
    ns = f"ns-{i:05}"
    items += [namespace(ns, i % 100), limit_range(ns)]
    items += [secret(ns, f"secret-{s}") for s in range(5)]
    items.append({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": ns}})
    if i % 10 == 0:
        items.append({"apiVersion": "windows.k8s.io/v1", "kind": "GMSACredentialSpec",
                      "metadata": {"name": f"gmsa-{i:05}"},
                      "credspec": {"CmsPlugins": ["ActiveDirectory"],
                                   "DomainJoinConfig": {"DnsName": "contoso.com", "MachineAccountName": f"app{i}"}}})
json.dump({"apiVersion": "v1", "kind": "List", "items": items}, sys.stdout)
