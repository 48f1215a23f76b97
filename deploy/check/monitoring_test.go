package check

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
)

func families(t *testing.T) Families {
	t.Helper()
	fs, err := ReadFamilies("testdata/metrics.txt")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := fs["gopotency_decisions_total"]; !ok {
		t.Fatal("testdata/metrics.txt lists no gopotency metric")
	}
	return fs
}

// requiredAlerts are what an operator must act on (issue: store errors and
// 503s, lease renewals, protocol errors, buffered bytes near the budget,
// outcome-unknown rate).
var requiredAlerts = []string{"GoPotencyStoreErrors", "GoPotencyUnavailableAnswers", "GoPotencyLeaseRenewalsFailing",
	"GoPotencyProtocolErrors", "GoPotencyBufferedBytesNearBudget", "GoPotencyOutcomeUnknown"}

// TestAlertRules: the shipped rules load as Prometheus loads a rule file
// (strict fields, expressions, annotation templates), select only metrics
// and labels the server exports, cover what an operator must act on, and
// each has its section in docs/operations.md, where its runbook_url points.
func TestAlertRules(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(chart, "files", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	alerts, errs := families(t).CheckRules(b)
	for _, err := range errs {
		t.Error(err)
	}
	for _, a := range requiredAlerts {
		if !slices.Contains(alerts, a) {
			t.Errorf("no alert %s", a)
		}
	}
	doc, err := os.ReadFile(filepath.Join(repo, "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range alerts {
		if !regexp.MustCompile(`(?m)^### ` + a + `$`).Match(doc) {
			t.Errorf("docs/operations.md has no section \"### %s\" (what it means, what to do)", a)
		}
		if !strings.Contains(string(b), "docs/operations.md#"+strings.ToLower(a)+"\n") {
			t.Errorf("alert %s: runbook_url does not point at its section of docs/operations.md", a)
		}
	}
}

// TestDashboard: every query of the Grafana dashboard parses and selects
// only metrics and labels the server exports.
func TestDashboard(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(chart, "files", "dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	n, errs := families(t).CheckDashboard(b)
	for _, err := range errs {
		t.Error(err)
	}
	if n < 10 {
		t.Errorf("%d queries checked: the dashboard walk found too few", n)
	}
}

// TestMonitoringChecksReject: the checks above fail on the mistakes they
// exist for.
func TestMonitoringChecksReject(t *testing.T) {
	fs := families(t)
	for _, c := range []struct{ expr, want string }{
		{`rate(gopotency_decision_total[5m])`, "exports no metric gopotency_decision_total"},
		{`sum by (outcom) (rate(gopotency_decisions_total[5m]))`, "label outcom"},
		{`rate(gopotency_decisions_total{reason="x"}[5m])`, "label reason"},
		{`rate(gopotency_decisions_total[5m]`, "unclosed"},
		{`histogram_quantile(0.99, rate(gopotency_lease_renewals_total_bucket[5m]))`, "exports no metric"},
		{`{__name__=~"gopotency_.*"}`, "names no metric"},
	} {
		errs := fs.CheckQuery(c.expr)
		if len(errs) == 0 || !strings.Contains(errs[0].Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.expr, errs, c.want)
		}
	}
	for _, c := range []struct{ rules, want string }{
		{"groups: [{name: g, rules: [{alert: A, expr: 'up', for: 5m}]}]", "exports no metric up"},
		{"groups: [{name: g, rules: [{alert: A, expr: 'gopotency_extproc_streams_active > 1', labels: {severity: page}}]}]", "severity"},
		{"groups: [{name: g, rules: [{alert: A, expr: 'gopotency_extproc_streams_active > 1', annotations: {summary: '{{ $value '}}]}]", "summary"},
		{"groups: [{name: g, rules: [{alert: A, expr: 'gopotency_extproc_streams_active > 1', fro: 5m}]}]", "fro"},
	} {
		_, errs := fs.CheckRules([]byte(c.rules))
		found := false
		for _, err := range errs {
			found = found || strings.Contains(err.Error(), c.want)
		}
		if !found {
			t.Errorf("%s: %v, want an error with %q", c.rules, errs, c.want)
		}
	}
	if _, errs := fs.CheckDashboard([]byte(`{"panels": [{"title": "p", "type": "row", "panels": [{"title": "q", "targets": [{"refId": "A", "expr": "rate(gopotency_nope_total[$__rate_interval])"}]}]}]}`)); len(errs) == 0 {
		t.Error("a nested panel's unknown metric passed")
	}
}

// TestMonitoringKit: the chart's monitoring objects (metrics.* values)
// decode strictly into the Prometheus Operator's types, the ServiceMonitor
// scrapes the admin port of the gopotency Service, the PrometheusRule holds
// files/alerts.yaml and the dashboard ConfigMap files/dashboard.json; and
// the kustomize component deploy/components/monitoring, added to an
// overlay, renders the same objects.
func TestMonitoringKit(t *testing.T) {
	objs := helmRender(t, []string{"ci/envoy-values.yaml"}, "metrics: {serviceMonitor: {enabled: true}, prometheusRule: {enabled: true}, dashboard: {enabled: true}}\n")
	dir := t.TempDir()
	rel := func(p string) string {
		r, err := filepath.Rel(dir, filepath.Join(repo, p))
		if err != nil {
			t.Fatal(err)
		}
		return r // kustomize takes other kustomizations by relative path only
	}
	kust := "resources: [" + rel("deploy/overlays/envoy") + "]\ncomponents: [" + rel("deploy/components/monitoring") + "]\n"
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(kust), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := Render(dir)
	if err != nil {
		t.Fatal(err)
	}
	decoded, errs := Decode(t.Context(), out, schemas(t))
	kustomized := Objects(decoded)
	for _, err := range errs {
		t.Error(err)
	}
	alerts, err := os.ReadFile(filepath.Join(chart, "files", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dashboard, err := os.ReadFile(filepath.Join(chart, "files", "dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	for name, set := range map[string]Objects{"chart": objs, "component": kustomized} {
		checkMonitoring(t, name, set, alerts, dashboard)
	}
	for _, kind := range []string{"ServiceMonitor", "PrometheusRule", "ConfigMap"} {
		name := "gopotency"
		if kind == "ConfigMap" {
			name = "gopotency-dashboard"
		}
		g, ok1 := objs.Find(kind, "gopotency", name)
		w, ok2 := kustomized.Find(kind, "gopotency", name)
		if !ok1 || !ok2 {
			t.Errorf("%s %s: chart %v, component %v", kind, name, ok1, ok2)
			continue
		}
		if gn, wn := normalise(g.Raw, nil), normalise(w.Raw, nil); !equalJSON(gn, wn) {
			t.Errorf("%s differs between the chart and the component:\n%s", g, jsonDiff(wn, gn))
		}
	}
}

func checkMonitoring(t *testing.T, from string, objs Objects, alerts, dashboard []byte) {
	t.Helper()
	so, ok := objs.Find("ServiceMonitor", "gopotency", "gopotency")
	if !ok {
		t.Errorf("%s: no ServiceMonitor", from)
		return
	}
	sm := so.Typed.(*monitoringv1.ServiceMonitor)
	sel := labels.SelectorFromSet(sm.Spec.Selector.MatchLabels)
	scraped := 0
	for _, o := range objs.OfKind("Service") {
		s := o.Typed.(*corev1.Service)
		if !sel.Matches(labels.Set(s.Labels)) {
			continue
		}
		for _, e := range sm.Spec.Endpoints {
			for _, p := range s.Spec.Ports {
				if p.Name == e.Port && p.TargetPort.StrVal == "http-admin" && e.Path == "/metrics" {
					scraped++
				}
			}
		}
	}
	if scraped != 1 {
		t.Errorf("%s: the ServiceMonitor scrapes %d Service ports serving /metrics, want the gopotency Service's http-admin", from, scraped)
	}
	ro, ok := objs.Find("PrometheusRule", "gopotency", "gopotency")
	if !ok {
		t.Errorf("%s: no PrometheusRule", from)
		return
	}
	var file struct{ Groups any }
	if err := yamlUnmarshal(alerts, &file); err != nil {
		t.Fatal(err)
	}
	if !equalJSON(ro.Raw["spec"].(map[string]any)["groups"], file.Groups) {
		t.Errorf("%s: the PrometheusRule's groups are not files/alerts.yaml's (deploy/components/monitoring/prometheusrule.yaml holds a copy of them)", from)
	}
	co, ok := objs.Find("ConfigMap", "gopotency", "gopotency-dashboard")
	if !ok {
		t.Errorf("%s: no dashboard ConfigMap", from)
		return
	}
	cm := co.Typed.(*corev1.ConfigMap)
	if strings.TrimSpace(cm.Data["gopotency.json"]) != strings.TrimSpace(string(dashboard)) || cm.Labels["grafana_dashboard"] != "1" {
		t.Errorf("%s: the dashboard ConfigMap does not carry files/dashboard.json with label grafana_dashboard=1 (deploy/components/monitoring/dashboard.json is a copy of it)", from)
	}
}

// TestMonitoringObjectsRejected: the ServiceMonitor and PrometheusRule
// checks fail on what an API server with the Prometheus Operator's CRDs
// would refuse, or its types do not have.
func TestMonitoringObjectsRejected(t *testing.T) {
	const sm = "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: s, namespace: gopotency}\nspec:\n  selector: {matchLabels: {app: x}}\n"
	const pr = "apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata: {name: r, namespace: gopotency}\nspec:\n  groups: [{name: g, rules: [{alert: A, expr: up, "
	for _, c := range []struct{ name, doc, want string }{
		{"unknown field", sm + "  endpoint: [{port: http-admin}]\n", `unknown field "spec.endpoint"`},
		{"interval that is no duration", sm + "  endpoints: [{port: http-admin, interval: 30 seconds}]\n", "interval: Invalid value"},
		{"rule without an expression", strings.Replace(pr, "expr: up, ", "", 1) + "for: 5m}]}]\n", "expr: Required value"},
		{"for that is no duration", pr + "for: five minutes}]}]\n", "for: Invalid value"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := decodeErrors(t, c.doc); !strings.Contains(got, c.want) {
				t.Errorf("errors %q, want one with %q", got, c.want)
			}
		})
	}
}
