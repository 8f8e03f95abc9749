#!/usr/bin/env python3
"""Lint a Helm chart with the real Helm lint engine (helm-sdkpy), no helm binary.

  helm-lint.py CHART_DIR [--values FILE ...] [--set-json JSON ...] [--strict]

helm-sdkpy's Lint takes only a chart path, so to lint with other values the
chart is copied to a temp dir and its values.yaml is replaced by
(chart values.yaml deep-merged with the given values), written as JSON.

helm-sdkpy returns Helm's lint result with each message's *text* lost (Go
error values serialise to {}), so only severity and path come from Helm.  To
say *why*, helm-lint.py adds explanations, clearly marked:
  * "helm:"  - Helm's own error text, obtained by rendering the chart with the
               same values through helm-render's fake-cluster install
               (template errors, values.schema.json violations, ...);
  * "hint:"  - a Python re-check of common Chart.yaml rules.

Exit status: 1 if Helm reports any ERROR (or, with --strict, any WARNING),
2 on usage errors, else 0.  Warnings and infos are always printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import helmrender  # noqa: E402

STRICT_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
                           r"(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")
SEVERITY = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}
SEMVER = re.compile(r"^v?(0|[1-9]\d*)(\.(0|[1-9]\d*))?(\.(0|[1-9]\d*))?"
                    r"(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")


def coalesce(base: dict, override: dict) -> dict:
    """User values over chart defaults, Helm style: maps merge, null deletes."""
    out = dict(base)
    for k, v in override.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = coalesce(out[k], v)
        else:
            out[k] = v
    return out


def chart_yaml_hints(chart_dir: str) -> dict[int, list[str]]:
    """Re-check common Chart.yaml lint rules, keyed by the severity Helm uses."""
    import yaml
    hints: dict[int, list[str]] = {1: [], 2: [], 3: []}
    try:
        with open(os.path.join(chart_dir, "Chart.yaml"), encoding="utf-8") as f:
            cf = yaml.safe_load(f) or {}
    except Exception as e:  # noqa: BLE001
        hints[3].append(f"Chart.yaml cannot be parsed: {e}")
        return hints
    if cf.get("apiVersion") not in ("v1", "v2"):
        hints[3].append(f"apiVersion {cf.get('apiVersion')!r} must be v1 or v2")
    name = cf.get("name")
    if not name:
        hints[3].append("name is required")
    elif not isinstance(name, str) or "/" in name or name in (".", ".."):
        hints[3].append(f"chart name {name!r} is invalid")
    ver = cf.get("version")
    if ver is None:
        hints[3].append("version is required")
    else:
        if not isinstance(ver, str):
            hints[3].append(f"version should be of type string, not {type(ver).__name__} "
                            f"(quote it in Chart.yaml)")
        if not SEMVER.match(str(ver)):
            hints[3].append(f"version {ver!r} is not a valid SemVer version")
        if not STRICT_SEMVER.match(str(ver)) or not isinstance(ver, str):
            hints[2].append(f"version {ver!r} is not a strict SemVer 2 version (X.Y.Z)")
    if "appVersion" in cf and not isinstance(cf["appVersion"], str):
        hints[3].append("appVersion should be of type string (quote it)")
    if not cf.get("icon"):
        hints[1].append("icon is recommended")
    elif not re.match(r"^(https?|data):", str(cf["icon"])):
        hints[3].append("icon must be a URL")
    if cf.get("type") not in (None, "", "application", "library"):
        hints[3].append(f"type {cf.get('type')!r} must be application or library")
    for m in cf.get("maintainers") or []:
        if not isinstance(m, dict) or not m.get("name"):
            hints[3].append("each maintainer requires a name")
    if cf.get("apiVersion") == "v1" and cf.get("dependencies"):
        hints[3].append("dependencies are only allowed in apiVersion v2 charts")
    return hints


def run_lint(path: str, workdir: str) -> dict:
    helmrender.prepare_env(workdir)
    import helm_sdkpy
    kc = os.path.join(workdir, "kubeconfig.json")
    with open(kc, "w") as f:  # never contacted by lint; 127.0.0.1:9 refuses anyway
        json.dump({"apiVersion": "v1", "kind": "Config",
                   "clusters": [{"name": "none", "cluster": {"server": "http://127.0.0.1:9"}}],
                   "users": [{"name": "none", "user": {}}],
                   "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
                   "current-context": "none"}, f)
    with helmrender._CapturedStderr(False):
        cfg = helm_sdkpy.Configuration(namespace="default", kubeconfig=kc)
        return asyncio.run(helm_sdkpy.Lint(cfg).run(path))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("chart", help="chart directory")
    ap.add_argument("-f", "--values", action="append", default=[], metavar="FILE")
    ap.add_argument("--set-json", action="append", default=[], metavar="JSON")
    ap.add_argument("--strict", action="store_true", help="fail on warnings too")
    ap.add_argument("--no-explain", action="store_true",
                    help="do not add helm:/hint: explanations (faster)")
    args = ap.parse_args(argv)

    chart = os.path.abspath(args.chart)
    if not os.path.isfile(os.path.join(chart, "Chart.yaml")):
        print(f"helm-lint: {args.chart}: not a chart directory (no Chart.yaml)", file=sys.stderr)
        return 2
    try:
        user: dict = {}
        for f in args.values:
            user = helmrender.merge_values(user, helmrender.load_yaml_file(f))
        for s in args.set_json:
            user = helmrender.apply_set_json(user, s)
    except (OSError, ValueError) as e:
        print(f"helm-lint: {e}", file=sys.stderr)
        return 2

    workdir = tempfile.mkdtemp(prefix="helm-lint-")
    try:
        target = chart
        if user:
            target = os.path.join(workdir, "chart", os.path.basename(chart))
            shutil.copytree(chart, target, symlinks=True)
            vpath = os.path.join(target, "values.yaml")
            base = helmrender.load_yaml_file(vpath) if os.path.exists(vpath) else {}
            with open(vpath, "w", encoding="utf-8") as f:
                json.dump(coalesce(base, user), f, indent=2)  # JSON is YAML
                f.write("\n")
        try:
            result = run_lint(target, workdir)
        except Exception as e:  # noqa: BLE001 - helm_sdkpy.ChartError etc.
            print(f"Error: {e}", file=sys.stderr)
            return 1

        msgs = result.get("Messages") or []
        worst = max((m.get("Severity", 0) for m in msgs), default=0)
        print(f"==> Linting {args.chart}" + (" (with overridden values)" if user else ""))
        render_err = None
        if not args.no_explain and any(m.get("Severity", 0) >= 2 and m.get("Path") != "Chart.yaml"
                                       for m in msgs):
            try:
                helmrender.render_release(chart, user or None, timeout=30)
            except helmrender.RenderError as e:
                render_err = str(e).removeprefix("install failed: ")
        hints = chart_yaml_hints(chart) if not args.no_explain else {}
        for m in msgs:
            sev, path = m.get("Severity", 0), m.get("Path", "")
            print(f"[{SEVERITY.get(sev, sev)}] {path}")
            if args.no_explain:
                continue
            if path == "Chart.yaml":
                for h in hints.get(sev, []):
                    print(f"    hint: {h}")
            elif sev >= 2 and render_err:
                for line in render_err.splitlines():
                    print(f"    helm: {line}")
            elif sev >= 2:
                print("    hint: rendering with these values succeeds, so this is a "
                      "lint-only check (e.g. invalid YAML in a rendered document, "
                      "invalid metadata.name, deprecated apiVersion, missing selector)")
        errors = sum(1 for m in msgs if m.get("Severity", 0) >= 3)
        warnings = sum(1 for m in msgs if m.get("Severity", 0) == 2)
        n = result.get("TotalChartsLinted", 0)
        failed = errors > 0 or (args.strict and warnings > 0)
        print(f"\n{n} chart(s) linted, {'1 chart(s) failed' if failed else '0 chart(s) failed'}"
              f" ({errors} error(s), {warnings} warning(s))")
        return 1 if failed else 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
