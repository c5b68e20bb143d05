#!/usr/bin/env bash
# Checks kiln's deployment artifacts without a cluster: lints the Helm chart,
# renders it with default and non-default values, builds the kustomize
# config, and validates what comes out:
#
#   - every document has apiVersion, kind, metadata.name; no duplicates;
#     namespaced objects are in the install namespace; label and annotation
#     values are strings;
#   - the operator Deployment runs non-root with a read-only root
#     filesystem, no capabilities, no privilege escalation, resource
#     requests, health probes, and the flags and env the operator reads;
#   - the operator's ClusterRole grants exactly the rules listed below, the
#     leader-election Role exactly its Lease, and every binding points at a
#     role and service account that exist;
#   - the chart with default values and config/default install the same
#     objects (same names, same rules, same pod spec, same CRDs);
#   - the samples are valid against the CRDs' schemas;
#   - the Argo CD health script the chart README shows is the one the chart
#     ships (charts/kiln/argocd/, which the e2e suite runs under gopher-lua).
#
# Exits non-zero on any problem. Tools come from scripts/tools.sh (cached
# outside the repository; a warm run takes a few seconds).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { echo "==> $*" >&2; }

if ! python3 -c 'import yaml' 2>/dev/null; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "check-deploy: installing python3-yaml" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-yaml >/dev/null
fi

tool_path=$(scripts/tools.sh helm kustomize)
PATH="$tool_path:$PATH"

out=$(mktemp -d "${TMPDIR:-/tmp}/kiln-check-deploy.XXXXXX")
trap 'rm -rf "$out"' EXIT

# run <log name> <command...>: quiet on success, the command's output on failure.
run() {
  local log="$out/$1.log"
  shift
  if ! "$@" >"$log" 2>&1; then
    echo "check-deploy: failed: $*" >&2
    cat "$log" >&2
    exit 1
  fi
}

chart=charts/kiln
ns=kiln-system
ha_values=(--set metrics.serviceMonitor.enabled=true --set replicaCount=2)
min_values=(--set metrics.enabled=false --set rbac.aggregateToDefaultRoles=false
  --set watchNamespace=team-a --set builder.image.digest=sha256:0000000000000000000000000000000000000000000000000000000000000000)

step "helm lint $chart ($(helm version --short))"
run lint-default helm lint --strict "$chart" --namespace "$ns"
run lint-ha helm lint --strict "$chart" --namespace "$ns" "${ha_values[@]}"
run lint-min helm lint --strict "$chart" --namespace "$ns" "${min_values[@]}"

step "helm template kiln $chart (default, serviceMonitor + 2 replicas, minimal)"
helm template kiln "$chart" -n "$ns" --include-crds >"$out/helm-default.yaml"
helm template kiln "$chart" -n "$ns" --include-crds "${ha_values[@]}" >"$out/helm-ha.yaml"
# Another release name: every name derived from it must still line up.
helm template builds "$chart" -n "$ns" --include-crds "${min_values[@]}" >"$out/helm-min.yaml"
if helm template kiln "$chart" -n "$ns" --set replicaCount=2 --set leaderElection.enabled=false \
  >"$out/helm-no-lease.yaml" 2>"$out/helm-no-lease.log"; then
  echo "check-deploy: 2 replicas without leader election rendered; the chart must refuse it" >&2
  exit 1
fi
grep -q "needs leaderElection.enabled=true" "$out/helm-no-lease.log" || {
  echo "check-deploy: 2 replicas without leader election failed for another reason:" >&2
  cat "$out/helm-no-lease.log" >&2
  exit 1
}

step "kustomize build config/default, config/samples ($(kustomize version))"
kustomize build config/default >"$out/kustomize-default.yaml"
kustomize build config/samples >"$out/samples.yaml"

step "validate rendered manifests"
python3 - "$out" "$ns" <<'PY'
import copy
import re
import sys

import yaml

out, NS = sys.argv[1], sys.argv[2]
problems = []


def problem(where, msg):
    problems.append(f"{where}: {msg}")


def load(name):
    with open(f"{out}/{name}.yaml") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}

# The operator's ClusterRole, rule by rule: (apiGroup, resource) -> verbs.
# Why each is needed is in charts/kiln/templates/clusterrole.yaml and the
# chart README; a change here is a change of what the operator may do.
OPERATOR_RULES = {
    ("kiln.dev", "multiarchbuilds"): {"get", "list", "watch"},
    ("kiln.dev", "buildrequests"): {"get", "list", "watch", "create", "patch", "delete"},
    ("kiln.dev", "multiarchbuilds/status"): {"get", "patch"},
    ("kiln.dev", "buildrequests/status"): {"get", "patch"},
    ("kiln.dev", "multiarchbuilds/finalizers"): {"update"},
    ("kiln.dev", "buildrequests/finalizers"): {"update"},
    ("batch", "jobs"): {"get", "list", "watch", "create", "delete"},
    ("", "pods"): {"get", "list", "watch"},
    ("", "pods/log"): {"get"},
    ("", "nodes"): {"get", "list", "watch"},
    ("", "secrets"): {"get"},
    ("", "serviceaccounts"): {"get", "list", "watch", "create", "delete"},
    ("rbac.authorization.k8s.io", "roles"): {"get", "list", "watch", "create", "delete"},
    ("rbac.authorization.k8s.io", "rolebindings"): {"get", "list", "watch", "create", "delete"},
    ("events.k8s.io", "events"): {"create", "patch"},
}
# Verbs that let a holder grant more than it has.
ESCALATING = {"escalate", "bind", "impersonate", "*"}

REQUIRED_ARGS = ["--leader-elect=", "--leader-election-lease-name=", "--metrics-bind-address=",
                 "--health-probe-bind-address=", "--builder-image-pull-policy=",
                 "--job-ttl-seconds-after-finished=", "--log-format=", "--verbosity="]
REQUIRED_ENV = ["KILN_BUILDER_IMAGE_REF", "KILN_NAMESPACE", "KILN_POD_NAMESPACE", "KILN_POD_NAME"]


def key(d):
    return (d.get("kind"), (d.get("metadata") or {}).get("namespace"), (d.get("metadata") or {}).get("name"))


def by_kind(docs, kind):
    return [d for d in docs if d.get("kind") == kind]


def one(where, docs, kind, name=None):
    found = [d for d in by_kind(docs, kind) if name is None or d["metadata"]["name"] == name]
    if len(found) != 1:
        problem(where, f"expected one {kind}{' ' + name if name else ''}, found {len(found)}")
        return None
    return found[0]


def check_documents(where, docs, namespaced_in):
    seen = set()
    for i, d in enumerate(docs):
        meta = d.get("metadata")
        if not isinstance(d.get("apiVersion"), str) or not d["apiVersion"]:
            problem(where, f"document {i} has no apiVersion")
        if not isinstance(d.get("kind"), str) or not d["kind"]:
            problem(where, f"document {i} has no kind")
        if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
            problem(where, f"document {i} ({d.get('kind')}) has no metadata.name")
            continue
        k = key(d)
        if k in seen:
            problem(where, f"duplicate {k}")
        seen.add(k)
        for field in ("labels", "annotations"):
            for lk, lv in (meta.get(field) or {}).items():
                if not isinstance(lv, str):
                    problem(where, f"{d['kind']}/{meta['name']}: {field}[{lk}] is {lv!r}, not a string")
        if namespaced_in is not None:
            if d["kind"] in CLUSTER_SCOPED:
                if "namespace" in meta:
                    problem(where, f"cluster-scoped {d['kind']}/{meta['name']} has a namespace")
            elif meta.get("namespace") != namespaced_in:
                problem(where, f"{d['kind']}/{meta['name']} is in namespace {meta.get('namespace')!r}, "
                               f"expected {namespaced_in!r}")


def rule_set(where, role):
    """(group, resource, verb, resourceNames) tuples; flags wildcards."""
    rules = set()
    for r in role.get("rules") or []:
        for field in ("apiGroups", "resources", "verbs"):
            if "*" in (r.get(field) or []):
                problem(where, f"{role['kind']}/{role['metadata']['name']} has a wildcard in {field}")
        if r.get("nonResourceURLs"):
            problem(where, f"{role['kind']}/{role['metadata']['name']} grants nonResourceURLs")
        names = tuple(sorted(r.get("resourceNames") or []))
        for g in r.get("apiGroups") or []:
            for res in r.get("resources") or []:
                for v in r.get("verbs") or []:
                    rules.add((g, res, v, names))
    return rules


def check_operator_rbac(where, docs, deployment):
    sa_name = deployment["spec"]["template"]["spec"].get("serviceAccountName")
    sa_ns = deployment["metadata"]["namespace"]
    if not sa_name or sa_name == "default":
        problem(where, "the operator pod must run as its own ServiceAccount")
    elif not [s for s in by_kind(docs, "ServiceAccount") if s["metadata"]["name"] == sa_name]:
        problem(where, f"ServiceAccount {sa_name} of the operator is not rendered")

    role = one(where, docs, "ClusterRole", deployment["metadata"]["name"])
    if role is not None:
        got = rule_set(where, role)
        want = {(g, r, v, ()) for (g, r), verbs in OPERATOR_RULES.items() for v in verbs}
        for extra in sorted(got - want):
            problem(where, f"operator ClusterRole grants {extra}, which the operator does not need")
        for missing in sorted(want - got):
            problem(where, f"operator ClusterRole lacks {missing}")
        for g, r, v, _ in got:
            if v in ESCALATING:
                problem(where, f"operator ClusterRole grants {v} on {g}/{r}")

    roles_by_name = {(d["kind"], d["metadata"]["name"]) for d in by_kind(docs, "ClusterRole") + by_kind(docs, "Role")}
    bound = set()
    for b in by_kind(docs, "ClusterRoleBinding") + by_kind(docs, "RoleBinding"):
        ref = b.get("roleRef") or {}
        if (ref.get("kind"), ref.get("name")) not in roles_by_name:
            problem(where, f"{b['kind']}/{b['metadata']['name']} refers to missing {ref.get('kind')}/{ref.get('name')}")
        for s in b.get("subjects") or []:
            if s.get("kind") == "ServiceAccount":
                if (s.get("name"), s.get("namespace")) != (sa_name, sa_ns):
                    problem(where, f"{b['kind']}/{b['metadata']['name']} binds unexpected subject {s}")
                else:
                    bound.add((b["kind"], ref.get("name")))
    if ("ClusterRoleBinding", deployment["metadata"]["name"]) not in bound:
        problem(where, "no ClusterRoleBinding gives the operator ClusterRole to the operator's ServiceAccount")

    args = deployment["spec"]["template"]["spec"]["containers"][0].get("args") or []
    leader = [a.split("=", 1)[1] for a in args if a.startswith("--leader-elect=")]
    lease = [a.split("=", 1)[1] for a in args if a.startswith("--leader-election-lease-name=")]
    election_roles = [r for r in by_kind(docs, "Role") if r["metadata"]["name"].endswith("-leader-election")]
    if leader == ["true"]:
        if len(election_roles) != 1:
            problem(where, f"expected one leader-election Role, found {len(election_roles)}")
        else:
            r = election_roles[0]
            if r["metadata"].get("namespace") != sa_ns:
                problem(where, "the leader-election Role is not in the operator's namespace")
            want = {("coordination.k8s.io", "leases", "create", ())} | {
                ("coordination.k8s.io", "leases", v, tuple(lease)) for v in ("get", "update", "patch")}
            got = rule_set(where, r)
            if got != want:
                problem(where, f"leader-election Role grants {sorted(got)}, expected {sorted(want)}")
            if ("RoleBinding", r["metadata"]["name"]) not in bound:
                problem(where, "no RoleBinding gives the leader-election Role to the operator's ServiceAccount")


def check_deployment(where, docs, replicas, watch_namespace, metrics):
    dep = one(where, docs, "Deployment")
    if dep is None:
        return None
    spec = dep["spec"]
    if spec.get("replicas") != replicas:
        problem(where, f"replicas is {spec.get('replicas')}, expected {replicas}")
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    pod_labels = spec["template"]["metadata"].get("labels") or {}
    if not selector or any(pod_labels.get(k) != v for k, v in selector.items()):
        problem(where, "the Deployment's selector does not match its pod labels")
    pod = spec["template"]["spec"]
    psc = pod.get("securityContext") or {}
    if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
        problem(where, "the operator pod shares a host namespace")
    containers = pod.get("containers") or []
    if len(containers) != 1:
        problem(where, f"expected one container, found {len(containers)}")
        return dep
    c = containers[0]
    sc = c.get("securityContext") or {}
    run_as_non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
    run_as_user = sc.get("runAsUser", psc.get("runAsUser"))
    if run_as_non_root is not True:
        problem(where, "the operator does not set runAsNonRoot: true")
    if not isinstance(run_as_user, int) or run_as_user == 0:
        problem(where, f"the operator's runAsUser is {run_as_user!r}, expected a non-zero uid")
    if sc.get("readOnlyRootFilesystem") is not True:
        problem(where, "the operator's root filesystem is not read-only")
    if sc.get("allowPrivilegeEscalation") is not False:
        problem(where, "the operator allows privilege escalation")
    if sc.get("privileged"):
        problem(where, "the operator is privileged")
    caps = sc.get("capabilities") or {}
    if "ALL" not in (caps.get("drop") or []) or caps.get("add"):
        problem(where, f"the operator must drop ALL capabilities and add none, has {caps}")
    if (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        problem(where, "the operator has no RuntimeDefault seccomp profile")
    requests = (c.get("resources") or {}).get("requests") or {}
    for r in ("cpu", "memory"):
        if not requests.get(r):
            problem(where, f"the operator has no {r} request")
    if not ((c.get("resources") or {}).get("limits") or {}).get("memory"):
        problem(where, "the operator has no memory limit")
    if not c.get("image") or ":" not in c["image"]:
        problem(where, f"the operator image {c.get('image')!r} has no tag or digest")
    ports = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = (c.get(probe) or {}).get("httpGet") or {}
        if get.get("path") != path or get.get("port") not in ports:
            problem(where, f"{probe} must GET {path} on a named container port, has {get}")

    args = c.get("args") or []
    for a in REQUIRED_ARGS:
        if not any(x.startswith(a) for x in args):
            problem(where, f"the operator is not given {a}…")
    if metrics:
        if f"--metrics-bind-address=:{ports.get('metrics')}" not in args:
            problem(where, "--metrics-bind-address does not match the metrics port")
    elif "--metrics-bind-address=0" not in args or "metrics" in ports:
        problem(where, "with metrics disabled the operator must get --metrics-bind-address=0 and no metrics port")
    if f"--health-probe-bind-address=:{ports.get('health')}" not in args:
        problem(where, "--health-probe-bind-address does not match the health port")
    env = {e["name"]: e for e in c.get("env") or []}
    for name in REQUIRED_ENV:
        if name not in env:
            problem(where, f"the operator has no env {name}")
    if env.get("KILN_NAMESPACE", {}).get("value") != watch_namespace:
        problem(where, f"KILN_NAMESPACE is {env.get('KILN_NAMESPACE')}, expected {watch_namespace!r}")
    builder = env.get("KILN_BUILDER_IMAGE_REF", {}).get("value") or ""
    if not builder or (":" not in builder.rsplit("/", 1)[-1] and "@sha256:" not in builder):
        problem(where, f"KILN_BUILDER_IMAGE_REF {builder!r} is not a tagged or pinned reference")
    for name, path in (("KILN_POD_NAMESPACE", "metadata.namespace"), ("KILN_POD_NAME", "metadata.name")):
        if ((env.get(name, {}).get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath") != path:
            problem(where, f"{name} must come from the downward API field {path}")
    return dep


def check_metrics(where, docs, dep, service_monitor):
    services = by_kind(docs, "Service")
    monitors = by_kind(docs, "ServiceMonitor")
    if dep is None:
        return
    if len(services) != 1:
        problem(where, f"expected one metrics Service, found {len(services)}")
        return
    svc = services[0]
    pod_labels = dep["spec"]["template"]["metadata"].get("labels") or {}
    sel = svc["spec"].get("selector") or {}
    if not sel or any(pod_labels.get(k) != v for k, v in sel.items()):
        problem(where, "the metrics Service does not select the operator pods")
    ports = [p for p in svc["spec"].get("ports") or [] if p.get("name") == "metrics"]
    if len(ports) != 1 or ports[0].get("targetPort") != "metrics":
        problem(where, "the metrics Service must expose port 'metrics' targeting the container port 'metrics'")
    if service_monitor:
        if len(monitors) != 1:
            problem(where, f"expected one ServiceMonitor, found {len(monitors)}")
            return
        sm = monitors[0]
        labels = svc["metadata"].get("labels") or {}
        msel = (sm["spec"].get("selector") or {}).get("matchLabels") or {}
        if not msel or any(labels.get(k) != v for k, v in msel.items()):
            problem(where, "the ServiceMonitor does not select the metrics Service")
        eps = sm["spec"].get("endpoints") or []
        if [(e.get("port"), e.get("path")) for e in eps] != [("metrics", "/metrics")]:
            problem(where, f"the ServiceMonitor must scrape port metrics at /metrics, has {eps}")
        for e in eps:
            for field in ("interval", "scrapeTimeout"):
                if field in e and not re.fullmatch(r"([0-9]+(ms|s|m|h))+", str(e[field])):
                    problem(where, f"ServiceMonitor {field} {e[field]!r} is not a duration like 30s")
    elif monitors:
        problem(where, "a ServiceMonitor is rendered although it is disabled")


def crds(docs):
    return {d["metadata"]["name"]: d for d in by_kind(docs, "CustomResourceDefinition")}


def without_labels(d):
    d = copy.deepcopy(d)
    d["metadata"].pop("labels", None)
    d["metadata"].pop("annotations", None)
    if d["kind"] == "Deployment":
        d["spec"]["template"]["metadata"].pop("labels", None)
    return d


def validate_schema(where, value, schema, path):
    """The subset of structural-schema validation a sample can fail: types,
    unknown fields, required fields, enums."""
    t = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        if not isinstance(value, (int, str)):
            problem(where, f"{path}: expected an integer or string, got {value!r}")
        return
    types = {"string": str, "integer": int, "boolean": bool, "array": list, "object": dict, "number": (int, float)}
    if value is None and schema.get("nullable"):
        return
    if t in types and (not isinstance(value, types[t]) or (t == "integer" and isinstance(value, bool))):
        problem(where, f"{path}: expected {t}, got {value!r}")
        return
    if "enum" in schema and value not in schema["enum"]:
        problem(where, f"{path}: {value!r} is not one of {schema['enum']}")
    if t == "array" and "items" in schema:
        for i, item in enumerate(value):
            validate_schema(where, item, schema["items"], f"{path}[{i}]")
    if t == "object":
        props = schema.get("properties")
        for req in schema.get("required") or []:
            if req not in value:
                problem(where, f"{path}: required field {req} is missing")
        if props is not None:
            for k, v in value.items():
                if k in props:
                    validate_schema(where, v, props[k], f"{path}.{k}")
                elif not schema.get("x-kubernetes-preserve-unknown-fields"):
                    problem(where, f"{path}.{k}: unknown field (the API server would prune or reject it)")
        elif isinstance(schema.get("additionalProperties"), dict):
            for k, v in value.items():
                validate_schema(where, v, schema["additionalProperties"], f"{path}.{k}")


def check_samples(where, docs, crd_docs):
    by_kind_version = {}
    for crd in crd_docs.values():
        for v in crd["spec"]["versions"]:
            if v.get("served"):
                by_kind_version[(f"{crd['spec']['group']}/{v['name']}", crd["spec"]["names"]["kind"])] = v
    if not docs:
        problem(where, "no samples rendered")
    for d in docs:
        version = by_kind_version.get((d["apiVersion"], d["kind"]))
        if version is None:
            problem(where, f"{d['kind']}/{d['metadata']['name']}: no served CRD version for {d['apiVersion']}")
            continue
        body = {k: v for k, v in d.items() if k not in ("apiVersion", "kind", "metadata")}
        validate_schema(f"{where} {d['kind']}/{d['metadata']['name']}", body,
                        version["schema"]["openAPIV3Schema"], "")


helm_default = load("helm-default")
helm_ha = load("helm-ha")
helm_min = load("helm-min")
kust = load("kustomize-default")
samples = load("samples")

for where, docs in (("helm default", helm_default), ("helm ha", helm_ha), ("helm minimal", helm_min),
                    ("kustomize config/default", kust)):
    check_documents(where, docs, NS)
check_documents("config/samples", samples, None)

variants = (
    # where, docs, replicas, KILN_NAMESPACE, metrics, ServiceMonitor
    ("helm default", helm_default, 1, "", True, False),
    ("helm ha", helm_ha, 2, "", True, True),
    ("helm minimal", helm_min, 1, "team-a", False, False),
    ("kustomize config/default", kust, 1, "", True, False),
)
deployments = {}
for where, docs, replicas, watch, metrics, sm in variants:
    dep = check_deployment(where, docs, replicas, watch, metrics)
    deployments[where] = dep
    if dep is not None:
        check_operator_rbac(where, docs, dep)
        if metrics:
            check_metrics(where, docs, dep, sm)
        elif by_kind(docs, "Service") or by_kind(docs, "ServiceMonitor"):
            problem(where, "metrics are disabled but a Service or ServiceMonitor is rendered")

if not any(a.startswith("--leader-elect=true") for a in
           (deployments.get("helm ha") or {}).get("spec", {}).get("template", {}).get("spec", {})
           .get("containers", [{}])[0].get("args", [])):
    problem("helm ha", "2 replicas must run with --leader-elect=true")
if by_kind(helm_min, "ClusterRole") and [r for r in by_kind(helm_min, "ClusterRole")
                                         if r["metadata"]["name"].endswith(("-edit", "-view"))]:
    problem("helm minimal", "aggregated roles rendered although rbac.aggregateToDefaultRoles=false")
if "@sha256:0000" not in str(deployments.get("helm minimal")):
    problem("helm minimal", "builder.image.digest does not pin KILN_BUILDER_IMAGE_REF")

# The chart and config/default install the same thing (config/default also
# creates its namespace, which helm leaves to --create-namespace).
helm_objs = {key(d): d for d in helm_default}
kust_objs = {key(d): d for d in kust if d["kind"] != "Namespace"}
for k in sorted(set(helm_objs) - set(kust_objs), key=str):
    problem("chart vs config/default", f"{k} is in the chart only")
for k in sorted(set(kust_objs) - set(helm_objs), key=str):
    problem("chart vs config/default", f"{k} is in config/default only")
for k in sorted(set(helm_objs) & set(kust_objs), key=str):
    if without_labels(helm_objs[k]) != without_labels(kust_objs[k]):
        problem("chart vs config/default", f"{k} differs beyond labels")
if not [d for d in kust if d["kind"] == "Namespace" and d["metadata"]["name"] == NS]:
    problem("kustomize config/default", f"does not create namespace {NS}")

chart_crds = crds(helm_default)
if set(chart_crds) != {"multiarchbuilds.kiln.dev", "buildrequests.kiln.dev"}:
    problem("helm default", f"CRDs are {sorted(chart_crds)}")
check_samples("config/samples", samples, chart_crds)

# The README's copy of the Argo CD health check (indented under the
# argocd-cm key) must be the shipped file, the one the e2e suite tests.
readme = open("charts/kiln/README.md").read().splitlines()
key = "resource.customizations.health.kiln.dev_MultiArchBuild: |"
starts = [i for i, line in enumerate(readme) if line.strip() == key]
if len(starts) != 1:
    problem("charts/kiln/README.md", f"shows the Argo CD health check {len(starts)} times, not once")
else:
    indent = " " * (len(readme[starts[0]]) - len(readme[starts[0]].lstrip()) + 2)
    shown = []
    for line in readme[starts[0] + 1:]:
        if line and not line.startswith(indent):
            break
        shown.append(line[len(indent):])
    shipped = open("charts/kiln/argocd/multiarchbuild-health.lua").read().rstrip("\n").splitlines()
    if [l.rstrip() for l in shown] != [l.rstrip() for l in shipped]:
        problem("charts/kiln/README.md", "its Argo CD health check differs from charts/kiln/argocd/multiarchbuild-health.lua")

if problems:
    print(f"check-deploy: {len(problems)} problem(s):", file=sys.stderr)
    for p in problems:
        print(f"  - {p}", file=sys.stderr)
    sys.exit(1)
counts = ", ".join(f"{w}: {len(d)} objects" for w, d in (("helm default", helm_default), ("helm ha", helm_ha),
                                                       ("helm minimal", helm_min), ("kustomize", kust),
                                                       ("samples", samples)))
print(f"check-deploy: manifests valid ({counts})", file=sys.stderr)
PY
echo "check-deploy: ok" >&2
