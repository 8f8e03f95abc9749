"""Render a Helm chart with the real Helm engine (helm-sdkpy) against fakekube.

Library used by helm-render.py and helm-lint.py.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import sys
import tempfile

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import fakekube  # noqa: E402

_ENV_DONE = False


def prepare_env(workdir: str) -> None:
    """Hermetic Helm environment.  Must run before the Go library is loaded:
    a c-shared Go library snapshots the process environment when it is loaded."""
    global _ENV_DONE
    if _ENV_DONE:
        return
    for var, sub in (("HELM_CACHE_HOME", "cache"), ("HELM_CONFIG_HOME", "config"),
                     ("HELM_DATA_HOME", "data")):
        os.environ[var] = os.path.join(workdir, sub)
        os.makedirs(os.environ[var], exist_ok=True)
    os.environ["HELM_DRIVER"] = "secret"
    os.environ.pop("KUBECONFIG", None)
    os.environ.pop("HELM_KUBECONTEXT", None)
    no_proxy = os.environ.get("NO_PROXY", "")
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = ",".join(
        filter(None, [no_proxy, "127.0.0.1", "localhost"]))
    _ENV_DONE = True


# ---- values handling ----------------------------------------------------------

def load_yaml_file(path: str):
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    # Keep timestamps as strings (json can't encode datetime; Helm would give
    # the string back through templates anyway in most uses).
    Loader.yaml_implicit_resolvers = {
        k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
        for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    with open(path, encoding="utf-8") as f:
        data = yaml.load(f, Loader=Loader)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: values file must contain a YAML mapping")
    return data


def merge_values(base: dict, override: dict) -> dict:
    """Helm CLI semantics for several -f files: maps merge recursively, anything
    else replaces.  (nulls are kept; Helm itself then deletes the key.)"""
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge_values(out[k], v)
        else:
            out[k] = v
    return out


def _split_path(path: str) -> list:
    """a.b\\.c[0].d -> ['a', 'b.c', 0, 'd']"""
    parts, cur, i = [], "", 0
    while i < len(path):
        c = path[i]
        if c == "\\" and i + 1 < len(path):
            cur += path[i + 1]
            i += 2
            continue
        if c == ".":
            parts.append(cur)
            cur = ""
        elif c == "[":
            j = path.index("]", i)
            if cur:
                parts.append(cur)
                cur = ""
            parts.append(int(path[i + 1:j]))
            i = j
        else:
            cur += c
        i += 1
    if cur:
        parts.append(cur)
    return parts


def apply_set_json(values: dict, arg: str) -> dict:
    """--set-json either a whole JSON object (merged), or Helm-style KEY=JSON."""
    stripped = arg.strip()
    if stripped.startswith("{"):
        obj = json.loads(stripped)
        return merge_values(values, obj)
    for item in _split_top_level_commas(arg):
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"--set-json {item!r}: expected KEY=JSON or a JSON object")
        val = json.loads(raw)
        path = _split_path(key.strip())
        cur = values
        for idx, p in enumerate(path):
            last = idx == len(path) - 1
            nxt_default = [] if (not last and isinstance(path[idx + 1], int)) else {}
            if isinstance(p, int):
                if not isinstance(cur, list):
                    raise ValueError(f"--set-json {key}: index into a non-list")
                while len(cur) <= p:
                    cur.append(None)
                if last:
                    cur[p] = val
                else:
                    if not isinstance(cur[p], (dict, list)):
                        cur[p] = nxt_default
                    cur = cur[p]
            else:
                if last:
                    cur[p] = val
                else:
                    if not isinstance(cur.get(p), (dict, list)):
                        cur[p] = nxt_default
                    cur = cur[p]
    return values


def _split_top_level_commas(s: str) -> list[str]:
    """Split 'a=1,b={"x":1,"y":2}' on commas that are outside JSON brackets/strings."""
    out, depth, cur, in_str, esc = [], 0, "", False, False
    for c in s:
        if in_str:
            cur += c
            if esc:
                esc = False
            elif c == "\\":
                esc = True
            elif c == '"':
                in_str = False
            continue
        if c == '"':
            in_str = True
        elif c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
        elif c == "," and depth == 0:
            out.append(cur)
            cur = ""
            continue
        cur += c
    if cur:
        out.append(cur)
    return out


# ---- rendering ----------------------------------------------------------------

class RenderError(Exception):
    pass


class _CapturedStderr:
    """Swallow client-go's klog chatter (watch-stream warnings) that Go writes
    straight to fd 2; replay it only with --verbose."""

    def __init__(self, verbose: bool):
        self.verbose = verbose

    def __enter__(self):
        sys.stderr.flush()
        self.tmp = tempfile.TemporaryFile()
        self.saved = os.dup(2)
        os.dup2(self.tmp.fileno(), 2)
        return self

    def __exit__(self, *exc):
        sys.stderr.flush()
        os.dup2(self.saved, 2)
        os.close(self.saved)
        self.tmp.seek(0)
        data = self.tmp.read().decode(errors="replace")
        self.tmp.close()
        if self.verbose and data:
            sys.stderr.write(data)
        return False


_NO_MATCH = re.compile(r'no matches for kind "([^"]+)" in version "([^"]+)"')


def decode_release_secret(secret: dict) -> dict:
    raw = base64.b64decode(secret["data"]["release"])  # k8s []byte field
    raw = base64.b64decode(raw)  # Helm's own base64
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return json.loads(raw)


def render_release(chart: str, values: dict | None = None, namespace: str = "default",
                   release: str = "release-name", kube_version: str = "v1.37.0",
                   api_versions: list[str] | None = None, seed_objects: list[dict] | None = None,
                   skip_schema_validation: bool = False, timeout: int = 60,
                   auto_kinds: bool = True, verbose: bool = False) -> dict:
    """Run `helm install` against a fresh fake API server; return the Helm release
    (dict with 'manifest', 'hooks', ...).  Raises RenderError with Helm's message."""
    import asyncio

    workdir = tempfile.mkdtemp(prefix="helm-render-")
    prepare_env(workdir)
    import helm_sdkpy  # after prepare_env

    if not os.path.exists(chart):
        raise RenderError(f"chart path {chart!r} does not exist (only local charts are supported)")
    chart = os.path.abspath(chart)
    extra_kinds: list[tuple[str, str]] = []
    for _attempt in range(25):
        fk = fakekube.FakeKube(kube_version=kube_version, verbose=verbose)
        for av in api_versions or []:
            bits = av.split("/")
            if len(bits) >= 3:  # group/version/Kind
                fk.add_kind("/".join(bits[:-1]), bits[-1])
            else:
                fk.add_group_version(av)
        for av, kind in extra_kinds:
            fk.add_kind(av, kind)
        for obj in seed_objects or []:
            fk.seed(json.loads(json.dumps(obj)), namespace)
        url = fk.start()
        kc_path = os.path.join(workdir, "kubeconfig.json")
        with open(kc_path, "w") as f:
            f.write(fk.kubeconfig(url, namespace))
        try:
            with _CapturedStderr(verbose):
                cfg = helm_sdkpy.Configuration(namespace=namespace, kubeconfig=kc_path)
                result = asyncio.run(helm_sdkpy.Install(cfg).run(
                    release, chart, values=values or None, wait=False, timeout=timeout,
                    skip_schema_validation=skip_schema_validation, create_namespace=False,
                    server_side_apply=False, disable_openapi_validation=True,
                    take_ownership=bool(seed_objects)))
        except helm_sdkpy.HelmError as e:
            msg = str(e)
            m = _NO_MATCH.search(msg)
            if m and auto_kinds and (m.group(2), m.group(1)) not in extra_kinds:
                extra_kinds.append((m.group(2), m.group(1)))
                print(f"helm-render: note: fake API server now also serves kind "
                      f"{m.group(1)} in {m.group(2)} (re-rendering)", file=sys.stderr)
                continue
            raise RenderError(msg) from None
        finally:
            fk.stop()
        break
    else:
        raise RenderError("too many unknown kinds")

    secret = fk.objects.get(("", "secrets", namespace, f"sh.helm.release.v1.{release}.v1"))
    if secret is None:
        raise RenderError("internal: Helm stored no release secret")
    rel = decode_release_secret(secret)
    if rel.get("manifest") != result.get("manifest"):
        print("helm-render: warning: release secret and install result disagree",
              file=sys.stderr)
    rel["_fake_requests"] = fk.requests
    rel["_fake_created"] = [o for o in fk.created
                            if not o["metadata"]["name"].startswith("sh.helm.release.v1.")]
    return rel


def template_text(rel: dict, include_hooks: bool = True, skip_tests: bool = False) -> str:
    """Same text `helm template` prints: the manifest, then each hook."""
    out = rel.get("manifest", "").strip() + "\n"
    if include_hooks:
        for h in rel.get("hooks") or []:
            if skip_tests and "test" in (h.get("events") or []):
                continue
            out += f"---\n# Source: {h['path']}\n{h['manifest']}\n"
    return out
