#!/usr/bin/env python3
"""Render a Helm chart with the real Helm engine, no helm binary, no cluster.

Runs `helm install` (embedded Helm via helm-sdkpy) against an in-process fake
Kubernetes API server on 127.0.0.1 and prints what Helm rendered, in the same
format and order as `helm template` (manifests, then hooks).

  helm-render.py CHART_DIR [--values FILE ...] [--set-json JSON ...]
                 [--namespace NS] [--release NAME] [--out FILE]
                 [--output yaml|json] [--kube-version v1.37.0]
                 [--api-versions group/version[/Kind] ...] [--existing FILE ...]
                 [--no-hooks] [--skip-tests] [--skip-schema-validation]

Exit status: 0 ok, 1 Helm failed (its message is printed on stderr), 2 usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import helmrender  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("chart", help="chart directory (or local .tgz)")
    ap.add_argument("-f", "--values", action="append", default=[], metavar="FILE",
                    help="values YAML file; repeatable, later files win")
    ap.add_argument("--set-json", action="append", default=[], metavar="JSON",
                    help="a JSON object merged over the values, or Helm-style "
                         "KEY=JSONVALUE[,KEY=JSONVALUE]; repeatable, applied after --values")
    ap.add_argument("-n", "--namespace", default="default")
    ap.add_argument("--release", default="release-name",
                    help="release name (default: release-name, like helm template)")
    ap.add_argument("-o", "--output", choices=["yaml", "json"], default="yaml",
                    help="yaml: exactly what `helm template` prints; json: list of objects")
    ap.add_argument("--out", metavar="FILE", help="write to FILE instead of stdout")
    ap.add_argument("--kube-version", default="v1.37.0",
                    help="version the fake API server reports (.Capabilities.KubeVersion)")
    ap.add_argument("-a", "--api-versions", action="append", default=[],
                    metavar="GV[/Kind]", help="extra API group/version (optionally /Kind) "
                    "the fake server advertises (.Capabilities.APIVersions)")
    ap.add_argument("--existing", action="append", default=[], metavar="FILE",
                    help="YAML file of objects that already 'exist' in the cluster, "
                         "so `lookup` finds them")
    ap.add_argument("--no-hooks", action="store_true", help="omit hook manifests")
    ap.add_argument("--skip-tests", action="store_true", help="omit test hooks")
    ap.add_argument("--skip-schema-validation", action="store_true")
    ap.add_argument("--strict-kinds", action="store_true",
                    help="fail on kinds the fake does not know instead of adding them")
    ap.add_argument("--timeout", type=int, default=60, help="seconds (default 60)")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="log the fake API server's requests on stderr")
    args = ap.parse_args(argv)

    try:
        values: dict = {}
        for f in args.values:
            values = helmrender.merge_values(values, helmrender.load_yaml_file(f))
        for s in args.set_json:
            values = helmrender.apply_set_json(values, s)
        seeds = []
        if args.existing:
            import yaml
            for f in args.existing:
                with open(f, encoding="utf-8") as fh:
                    seeds += [d for d in yaml.safe_load_all(fh) if d]
    except (OSError, ValueError) as e:
        print(f"helm-render: {e}", file=sys.stderr)
        return 2

    try:
        rel = helmrender.render_release(
            args.chart, values, namespace=args.namespace, release=args.release,
            kube_version=args.kube_version, api_versions=args.api_versions,
            seed_objects=seeds, skip_schema_validation=args.skip_schema_validation,
            timeout=args.timeout, auto_kinds=not args.strict_kinds, verbose=args.verbose)
    except helmrender.RenderError as e:
        print(f"Error: {str(e).removeprefix('install failed: ')}", file=sys.stderr)
        return 1

    text = helmrender.template_text(rel, include_hooks=not args.no_hooks,
                                    skip_tests=args.skip_tests)
    if args.output == "json":
        import yaml
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
        text = json.dumps(docs, indent=2, sort_keys=False, default=str) + "\n"
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
