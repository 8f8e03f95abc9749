"""A minimal in-process fake Kubernetes API server, just enough for Helm.

Helm's install action (embedded via helm-sdkpy) talks to it over plain HTTP on
127.0.0.1.  It answers discovery, GET/LIST (404 / empty unless the object was
created or pre-seeded), and records POST/PUT/PATCH.  Nothing is ever sent
anywhere else.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# (group, version) -> list of (plural, Kind, namespaced)
DEFAULT_RESOURCES: dict[tuple[str, str], list[tuple[str, str, bool]]] = {
    ("", "v1"): [
        ("namespaces", "Namespace", False),
        ("secrets", "Secret", True),
        ("configmaps", "ConfigMap", True),
        ("services", "Service", True),
        ("serviceaccounts", "ServiceAccount", True),
        ("pods", "Pod", True),
        ("persistentvolumeclaims", "PersistentVolumeClaim", True),
        ("persistentvolumes", "PersistentVolume", False),
        ("endpoints", "Endpoints", True),
        ("limitranges", "LimitRange", True),
        ("resourcequotas", "ResourceQuota", True),
        ("events", "Event", True),
    ],
    ("apps", "v1"): [
        ("deployments", "Deployment", True),
        ("statefulsets", "StatefulSet", True),
        ("daemonsets", "DaemonSet", True),
        ("replicasets", "ReplicaSet", True),
    ],
    ("batch", "v1"): [("jobs", "Job", True), ("cronjobs", "CronJob", True)],
    ("policy", "v1"): [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    ("rbac.authorization.k8s.io", "v1"): [
        ("clusterroles", "ClusterRole", False),
        ("clusterrolebindings", "ClusterRoleBinding", False),
        ("roles", "Role", True),
        ("rolebindings", "RoleBinding", True),
    ],
    ("admissionregistration.k8s.io", "v1"): [
        ("mutatingwebhookconfigurations", "MutatingWebhookConfiguration", False),
        ("validatingwebhookconfigurations", "ValidatingWebhookConfiguration", False),
        ("validatingadmissionpolicies", "ValidatingAdmissionPolicy", False),
        ("validatingadmissionpolicybindings", "ValidatingAdmissionPolicyBinding", False),
    ],
    ("networking.k8s.io", "v1"): [
        ("ingresses", "Ingress", True),
        ("ingressclasses", "IngressClass", False),
        ("networkpolicies", "NetworkPolicy", True),
    ],
    ("autoscaling", "v2"): [("horizontalpodautoscalers", "HorizontalPodAutoscaler", True)],
    ("apiextensions.k8s.io", "v1"): [
        ("customresourcedefinitions", "CustomResourceDefinition", False)
    ],
    ("scheduling.k8s.io", "v1"): [("priorityclasses", "PriorityClass", False)],
    ("coordination.k8s.io", "v1"): [("leases", "Lease", True)],
    ("autoscaling", "v1"): [("horizontalpodautoscalers", "HorizontalPodAutoscaler", True)],
    ("storage.k8s.io", "v1"): [
        ("storageclasses", "StorageClass", False),
        ("csidrivers", "CSIDriver", False),
        ("volumeattachments", "VolumeAttachment", False),
    ],
    ("discovery.k8s.io", "v1"): [("endpointslices", "EndpointSlice", True)],
    ("node.k8s.io", "v1"): [("runtimeclasses", "RuntimeClass", False)],
    ("certificates.k8s.io", "v1"): [
        ("certificatesigningrequests", "CertificateSigningRequest", False)],
    ("events.k8s.io", "v1"): [("events", "Event", True)],
    # CRD groups a typical webhook chart uses (makes .Capabilities.APIVersions.Has
    # true for them, unlike plain `helm template`):
    ("cert-manager.io", "v1"): [
        ("issuers", "Issuer", True),
        ("clusterissuers", "ClusterIssuer", False),
        ("certificates", "Certificate", True),
    ],
    ("monitoring.coreos.com", "v1"): [
        ("servicemonitors", "ServiceMonitor", True),
        ("podmonitors", "PodMonitor", True),
        ("prometheusrules", "PrometheusRule", True),
    ],
}


def guess_plural(kind: str) -> str:
    k = kind.lower()
    if k.endswith("y") and not k.endswith(("ay", "ey", "oy", "uy")):
        return k[:-1] + "ies"
    if k.endswith(("s", "x", "ch", "sh")):
        return k + "es"
    return k + "s"


class FakeKube:
    def __init__(self, kube_version: str = "v1.37.0", verbose: bool = False):
        self.resources = copy.deepcopy(DEFAULT_RESOURCES)
        m = re.match(r"^v?(\d+)\.(\d+)(?:\.(\d+))?", kube_version)
        if not m:
            raise ValueError(f"bad kube version {kube_version!r}")
        self.kube_major, self.kube_minor = m.group(1), m.group(2)
        self.kube_git_version = f"v{m.group(1)}.{m.group(2)}.{m.group(3) or 0}"
        self.verbose = verbose
        self.lock = threading.Lock()
        self.objects: dict[tuple, dict] = {}  # (group, plural, ns, name) -> obj
        self.created: list[dict] = []  # every object Helm created/updated, in order
        self.requests: list[str] = []
        self._rv = 1
        self._uid = 0
        self.stopping = threading.Event()
        self.server: ThreadingHTTPServer | None = None

    # ---- resource table -------------------------------------------------
    def add_kind(self, api_version: str, kind: str, plural: str | None = None,
                 namespaced: bool = True) -> None:
        group, _, version = api_version.rpartition("/")
        lst = self.resources.setdefault((group, version), [])
        if any(k == kind for _, k, _ in lst):
            return
        lst.append((plural or guess_plural(kind), kind, namespaced))

    def add_group_version(self, api_version: str) -> None:
        group, _, version = api_version.rpartition("/")
        self.resources.setdefault((group, version), [])

    def _lookup_plural(self, group: str, version: str, plural: str):
        for p, kind, namespaced in self.resources.get((group, version), []):
            if p == plural:
                return kind, namespaced
        return None

    def _lookup_kind(self, api_version: str, kind: str):
        group, _, version = api_version.rpartition("/")
        for p, k, namespaced in self.resources.get((group, version), []):
            if k == kind:
                return group, p, namespaced
        return None

    def _register_crd(self, crd: dict) -> None:
        """Serve the kinds of a CRD Helm installs from crds/, and mark it Established."""
        spec = crd.get("spec", {})
        names = spec.get("names", {})
        for v in spec.get("versions") or []:
            if v.get("served", True) and names.get("kind"):
                self.add_kind(f"{spec.get('group')}/{v.get('name')}", names["kind"],
                              names.get("plural"), spec.get("scope") != "Cluster")
        crd["status"] = {"conditions": [
            {"type": "Established", "status": "True"},
            {"type": "NamesAccepted", "status": "True"}],
            "acceptedNames": names}

    # ---- pre-seeding (what `lookup` will find) --------------------------
    def seed(self, obj: dict, default_ns: str) -> None:
        api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
        found = self._lookup_kind(api_version, kind)
        if not found:
            self.add_kind(api_version, kind)
            found = self._lookup_kind(api_version, kind)
        group, plural, namespaced = found
        md = obj.setdefault("metadata", {})
        ns = (md.get("namespace") or default_ns) if namespaced else ""
        if namespaced:
            md["namespace"] = ns
        self._stamp(obj)
        self.objects[(group, plural, ns, md["name"])] = obj

    def _stamp(self, obj: dict) -> None:
        md = obj.setdefault("metadata", {})
        self._rv += 1
        md["resourceVersion"] = str(self._rv)
        if "uid" not in md:
            self._uid += 1
            md["uid"] = f"00000000-0000-4000-8000-{self._uid:012d}"
        md.setdefault("creationTimestamp", "2000-01-01T00:00:00Z")

    # ---- server lifecycle -----------------------------------------------
    def start(self) -> str:
        fake = self

        class Handler(_Handler):
            pass

        class Server(ThreadingHTTPServer):
            # Helm opens several connections at once; the default listen backlog of 5 overflows
            # on a loaded machine and the kernel then resets connections Helm already uses.
            request_queue_size = 256

        Handler.fake = fake
        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        t = threading.Thread(target=self.server.serve_forever, daemon=True)
        t.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.stopping.set()
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def kubeconfig(self, url: str, namespace: str) -> str:
        return json.dumps({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": url}}],
            "users": [{"name": "fake", "user": {"token": "fake"}}],
            "contexts": [{"name": "fake", "context": {
                "cluster": "fake", "user": "fake", "namespace": namespace}}],
            "current-context": "fake",
        })

    # ---- discovery documents --------------------------------------------
    def _resource_list(self, group: str, version: str) -> dict:
        gv = f"{group}/{version}" if group else version
        res = []
        for plural, kind, namespaced in self.resources[(group, version)]:
            res.append({
                "name": plural, "singularName": kind.lower(), "namespaced": namespaced,
                "kind": kind,
                "verbs": ["create", "delete", "deletecollection", "get", "list",
                          "patch", "update", "watch"],
            })
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                "resources": res}

    # ---- OpenAPI v3 --------------------------------------------------------
    # Helm builds hook resources with client-side "Strict" field validation.
    # kubectl's validator first asks OpenAPI v3 whether the server supports the
    # `fieldValidation` query parameter for the kind's PATCH operation; if it
    # does, validation is left to the server (us: a no-op).  So we publish a
    # skeleton spec per group/version that advertises exactly that, and no
    # schemas.
    def _openapi_v3_root(self) -> dict:
        paths = {}
        for g, v in sorted(self.resources):
            p = _openapi_gv_path(g, v)
            paths[p] = {"serverRelativeURL": f"/openapi/v3/{p}?hash=fake{self._rv}"}
        return {"paths": paths}

    def _openapi_v3_gv(self, gv_path: str) -> dict | None:
        for (g, v), lst in self.resources.items():
            if _openapi_gv_path(g, v) != gv_path:
                continue
            paths = {}
            for plural, kind, namespaced in lst:
                base = f"/{gv_path}/" + ("namespaces/{namespace}/" if namespaced else "")
                paths[base + plural + "/{name}"] = {"patch": {
                    "operationId": f"patch{kind}",
                    "x-kubernetes-group-version-kind": {"group": g, "version": v, "kind": kind},
                    "parameters": [{"name": "fieldValidation", "in": "query",
                                    "schema": {"type": "string", "uniqueItems": True}}],
                    "responses": {"200": {"description": "OK"}},
                }}
            return {"openapi": "3.0.0", "info": {"title": "fakekube", "version": v},
                    "paths": paths, "components": {"schemas": {}}}
        return None

    def _group_list(self) -> dict:
        groups: dict[str, list[str]] = {}
        for g, v in self.resources:
            if g:
                groups.setdefault(g, []).append(v)
        out = []
        for g in sorted(groups):
            versions = [{"groupVersion": f"{g}/{v}", "version": v} for v in groups[g]]
            out.append({"name": g, "versions": versions, "preferredVersion": versions[0]})
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": out}


WATCH = object()  # sentinel returned by _route for watch requests


def _openapi_gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _status(code: int, reason: str, message: str, details: dict | None = None) -> dict:
    st = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
          "message": message, "reason": reason, "code": code}
    if details:
        st["details"] = details
    return st


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeKube

    def log_message(self, fmt, *args):  # silence default stderr logging
        pass

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        fake = self.fake
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        body = self._body()
        fake.requests.append(f"{method} {self.path}")
        if fake.verbose:
            print(f"[fakekube] {method} {self.path}", file=sys.stderr)
        try:
            code, resp = self._route(method, url.path, query, body)
        except Exception as e:  # never hang Helm on our own bug
            code, resp = 500, _status(500, "InternalError", f"fakekube: {e!r}")
        if code is WATCH:
            self._watch(resp)
        else:
            self._send(code, resp)

    def _watch(self, arg) -> None:
        """An open watch stream that never reports events.

        Helm's kstatus-based waiter (used for hooks) LISTs then WATCHes.  Objects
        are already in their final state in the LIST, so we just keep the
        stream open until the client goes away, its timeoutSeconds passes, or
        the fake server stops.
        """
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        query, initial = arg
        for ev in initial:
            data = json.dumps(ev).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()
        try:
            timeout = float(query.get("timeoutSeconds", ["60"])[0])
        except ValueError:
            timeout = 60.0
        self.fake.stopping.wait(min(timeout, 600.0))
        try:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            pass
        self.close_connection = True

    def _decode(self, body: bytes) -> dict:
        if "protobuf" in self.headers.get("Content-Type", ""):
            return decode_k8s_protobuf(body)
        return json.loads(body)

    def _route(self, method, path, query, body):
        fake = self.fake
        parts = [p for p in path.split("/") if p]
        if path == "/version":
            return 200, {"major": fake.kube_major, "minor": fake.kube_minor,
                         "gitVersion": fake.kube_git_version, "platform": "linux/amd64",
                         "goVersion": "go1.25.0", "compiler": "gc"}
        if path == "/api":
            return 200, {"kind": "APIVersions", "versions": ["v1"],
                         "serverAddressByClientCIDRs": [
                             {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}
        if path == "/apis":
            return 200, fake._group_list()
        if parts[:1] == ["api"] and len(parts) == 2:
            return (200, fake._resource_list("", parts[1])) if ("", parts[1]) in fake.resources \
                else (404, _status(404, "NotFound", "the server could not find the requested resource"))
        if parts[:1] == ["apis"] and len(parts) == 3:
            key = (parts[1], parts[2])
            return (200, fake._resource_list(*key)) if key in fake.resources \
                else (404, _status(404, "NotFound", "the server could not find the requested resource"))
        if path == "/openapi/v3":
            return 200, fake._openapi_v3_root()
        if parts[:2] == ["openapi", "v3"] and len(parts) > 2:
            doc = fake._openapi_v3_gv("/".join(parts[2:]))
            return (200, doc) if doc else (404, _status(404, "NotFound", "not found"))
        if parts[:1] == ["apis"] and len(parts) == 2:
            gl = [g for g in fake._group_list()["groups"] if g["name"] == parts[1]]
            if gl:
                return 200, dict(gl[0], kind="APIGroup", apiVersion="v1")
        # resource paths
        if parts[:1] == ["api"]:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return 404, _status(404, "NotFound", "the server could not find the requested resource")
        ns = ""
        if len(rest) >= 3 and rest[0] == "namespaces":
            ns, rest = rest[1], rest[2:]
        if not rest:
            return 404, _status(404, "NotFound", "the server could not find the requested resource")
        plural, name, sub = rest[0], (rest[1] if len(rest) > 1 else None), rest[2:]
        info = fake._lookup_plural(group, version, plural)
        if info is None:
            return 404, _status(404, "NotFound", "the server could not find the requested resource")
        kind, namespaced = info
        gv = f"{group}/{version}" if group else version
        gr = {"group": group, "kind": plural, "name": name or ""}
        with fake.lock:
            if method == "GET" and name is None:
                items = [copy.deepcopy(o) for (g, p, n, _), o in sorted(fake.objects.items())
                         if g == group and p == plural and (not ns or n == ns)
                         and _match_labels(o, query.get("labelSelector", [""])[0])
                         and _match_fields(o, query.get("fieldSelector", [""])[0])]
                if query.get("watch", ["false"])[0] in ("true", "1"):
                    initial = []
                    if query.get("sendInitialEvents", ["false"])[0] == "true":
                        initial = [{"type": "ADDED", "object": o} for o in items]
                        initial.append({"type": "BOOKMARK", "object": {
                            "kind": kind, "apiVersion": gv, "metadata": {
                                "resourceVersion": str(fake._rv),
                                "annotations": {"k8s.io/initial-events-end": "true"}}}})
                    return WATCH, (query, initial)
                return 200, {"kind": kind + "List", "apiVersion": gv,
                             "metadata": {"resourceVersion": str(fake._rv)}, "items": items}
            key = (group, plural, ns, name)
            if method == "GET":
                obj = fake.objects.get(key)
                if obj is None:
                    return 404, _status(404, "NotFound",
                                        f'{plural}{"." + group if group else ""} "{name}" not found',
                                        gr)
                return 200, copy.deepcopy(obj)
            if method == "POST":
                obj = self._decode(body)
                name = obj.get("metadata", {}).get("name")
                key = (group, plural, ns, name)
                if key in fake.objects:
                    return 409, _status(409, "AlreadyExists",
                                        f'{plural} "{name}" already exists', gr)
                if namespaced:
                    obj["metadata"]["namespace"] = ns
                _finish(obj)
                if kind == "CustomResourceDefinition":
                    fake._register_crd(obj)
                fake._stamp(obj)
                fake.objects[key] = obj
                fake.created.append(copy.deepcopy(obj))
                return 201, obj
            if method == "PUT":
                obj = self._decode(body)
                if namespaced:
                    obj.setdefault("metadata", {})["namespace"] = ns
                fake._stamp(obj)
                created = key not in fake.objects
                fake.objects[key] = obj
                fake.created.append(copy.deepcopy(obj))
                return (201 if created else 200), obj
            if method == "PATCH":
                if key not in fake.objects:
                    return 404, _status(404, "NotFound", f'{plural} "{name}" not found', gr)
                ctype = self.headers.get("Content-Type", "")
                patch = json.loads(body)
                obj = fake.objects[key]
                if "json-patch" in ctype:
                    return 415, _status(415, "UnsupportedMediaType",
                                        "fakekube: JSON patch not supported")
                obj = _merge_patch(obj, patch)
                fake._stamp(obj)
                fake.objects[key] = obj
                fake.created.append(copy.deepcopy(obj))
                return 200, obj
            if method == "DELETE":
                obj = fake.objects.pop(key, None)
                if obj is None:
                    return 404, _status(404, "NotFound", f'{plural} "{name}" not found', gr)
                return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success"}
        return 405, _status(405, "MethodNotAllowed", "fakekube: unsupported")


# ---- minimal protobuf decoding ------------------------------------------
# client-go's typed clientset (used by Helm's Secret release driver) sends
# request bodies as Kubernetes protobuf ("k8s\0" + runtime.Unknown).  We
# decode just enough of v1.Secret / v1.ConfigMap to store them as JSON.

def _pb_fields(buf: bytes):
    i, n = 0, len(buf)
    while i < n:
        key, i = _pb_varint(buf, i)
        field, wt = key >> 3, key & 7
        if wt == 0:
            val, i = _pb_varint(buf, i)
        elif wt == 2:
            ln, i = _pb_varint(buf, i)
            val, i = buf[i:i + ln], i + ln
        elif wt == 1:
            val, i = buf[i:i + 8], i + 8
        elif wt == 5:
            val, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wt}")
        yield field, wt, val


def _pb_varint(buf: bytes, i: int):
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def _pb_map_entry(buf: bytes):
    k = v = b""
    for f, _, val in _pb_fields(buf):
        if f == 1:
            k = val
        elif f == 2:
            v = val
    return k.decode(), v


def _pb_object_meta(buf: bytes) -> dict:
    md: dict = {}
    names = {1: "name", 2: "generateName", 3: "namespace", 6: "resourceVersion", 5: "uid"}
    for f, _, val in _pb_fields(buf):
        if f in names and val:
            md[names[f]] = val.decode()
        elif f == 11:
            k, v = _pb_map_entry(val)
            md.setdefault("labels", {})[k] = v.decode()
        elif f == 12:
            k, v = _pb_map_entry(val)
            md.setdefault("annotations", {})[k] = v.decode()
    return md


def decode_k8s_protobuf(body: bytes) -> dict:
    if not body.startswith(b"k8s\x00"):
        raise ValueError("not a kubernetes protobuf envelope")
    type_meta, raw = {}, b""
    for f, _, val in _pb_fields(body[4:]):
        if f == 1:
            for tf, _, tv in _pb_fields(val):
                type_meta["apiVersion" if tf == 1 else "kind"] = tv.decode()
        elif f == 2:
            raw = val
    kind = type_meta.get("kind")
    obj: dict = {"apiVersion": type_meta.get("apiVersion", "v1"), "kind": kind}
    if kind not in ("Secret", "ConfigMap"):
        raise ValueError(f"fakekube cannot decode protobuf for kind {kind}")
    for f, _, val in _pb_fields(raw):
        if f == 1:
            obj["metadata"] = _pb_object_meta(val)
        elif kind == "Secret" and f == 2:
            k, v = _pb_map_entry(val)
            obj.setdefault("data", {})[k] = base64.b64encode(v).decode()
        elif kind == "Secret" and f == 3:
            obj["type"] = val.decode()
        elif kind == "ConfigMap" and f == 2:
            k, v = _pb_map_entry(val)
            obj.setdefault("data", {})[k] = v.decode()
        elif kind == "ConfigMap" and f == 3:
            k, v = _pb_map_entry(val)
            obj.setdefault("binaryData", {})[k] = base64.b64encode(v).decode()
    return obj


def _finish(obj: dict) -> None:
    """Make Jobs/Pods look already finished, so Helm's hook waiter returns at once.

    Only the stored copy gets a status; the rendered manifest is unaffected."""
    kind = obj.get("kind")
    if kind == "Job":
        obj["status"] = {
            "succeeded": 1, "startTime": "2000-01-01T00:00:00Z",
            "completionTime": "2000-01-01T00:00:01Z",
            "conditions": [{"type": "Complete", "status": "True"}],
        }
    elif kind == "Pod":
        obj["status"] = {"phase": "Succeeded"}


def _merge_patch(target, patch):
    if not isinstance(patch, dict):
        return patch
    if not isinstance(target, dict):
        target = {}
    out = dict(target)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = _merge_patch(out.get(k), v)
    return out


def _match_fields(obj: dict, selector: str) -> bool:
    md = obj.get("metadata", {})
    for term in filter(None, (t.strip() for t in selector.split(","))):
        neg = "!=" in term
        k, v = term.replace("!=", "=").replace("==", "=").split("=", 1)
        actual = {"metadata.name": md.get("name"),
                  "metadata.namespace": md.get("namespace")}.get(k.strip())
        if (actual == v.strip()) == neg:
            return False
    return True


def _match_labels(obj: dict, selector: str) -> bool:
    """Equality-based selectors only (k=v, k!=v, k), which is what Helm uses."""
    labels = obj.get("metadata", {}).get("labels") or {}
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True
