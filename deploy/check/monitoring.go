package check

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

// Families are the metric families a server exports.
type Families map[string]Family

// Family is one metric family: its type and label names.
type Family struct {
	Type   string
	Labels []string
}

// ReadFamilies reads testdata/metrics.txt: "name type label,label" per
// line, # comments. pkg/app's TestMetricFamiliesList writes it from the
// server's own registry and fails when it is stale.
func ReadFamilies(path string) (Families, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fams := Families{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 2 || len(fields) > 3 {
			return nil, fmt.Errorf("%s: %q: want \"name type [label,...]\"", path, line)
		}
		f := Family{Type: fields[1]}
		if len(fields) == 3 {
			f.Labels = strings.Split(fields[2], ",")
		}
		fams[fields[0]] = f
	}
	return fams, sc.Err()
}

// targetLabels are the labels Prometheus (and the Prometheus Operator's
// ServiceMonitor) attach to every scraped series.
var targetLabels = []string{"job", "instance", "namespace", "pod", "service", "container", "endpoint"}

// series returns the family a series name belongs to: the name itself, a
// histogram's _bucket, _sum and _count series, or a summary's _sum and
// _count.
func (fs Families) series(name string) (string, bool) {
	if _, ok := fs[name]; ok {
		return name, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if f, ok := fs[base]; ok && (f.Type == "histogram" || f.Type == "summary" && suffix != "_bucket") {
				return base, true
			}
		}
	}
	return "", false
}

var promParser = parser.NewParser(parser.Options{})

// CheckQuery parses a PromQL expression with Prometheus's own parser and
// reports every metric it selects that the server does not export, and
// every label it names that neither those metrics nor the scrape have.
func (fs Families) CheckQuery(expr string) []error {
	e, err := promParser.ParseExpr(expr)
	if err != nil {
		return []error{fmt.Errorf("%q: %w", expr, err)}
	}
	var errs []error
	known := map[string]bool{model.MetricNameLabel: true}
	for _, l := range targetLabels {
		known[l] = true
	}
	var named []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		fam, ok := fs.series(vs.Name)
		switch {
		case vs.Name == "":
			errs = append(errs, fmt.Errorf("%q: selector %s names no metric", expr, vs))
		case !ok:
			errs = append(errs, fmt.Errorf("%q: the server exports no metric %s (testdata/metrics.txt)", expr, vs.Name))
		default:
			for _, l := range fs[fam].Labels {
				known[l] = true
			}
			if strings.HasSuffix(vs.Name, "_bucket") {
				known["le"] = true
			}
		}
		for _, m := range vs.LabelMatchers {
			named = append(named, m.Name)
		}
		return nil
	})
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.AggregateExpr:
			named = append(named, n.Grouping...)
		case *parser.BinaryExpr:
			if n.VectorMatching != nil {
				named = append(named, n.VectorMatching.MatchingLabels...)
				named = append(named, n.VectorMatching.Include...)
			}
		}
		return nil
	})
	slices.Sort(named)
	for _, l := range slices.Compact(named) {
		if !known[l] {
			errs = append(errs, fmt.Errorf("%q: label %s is on none of the metrics it selects, nor added by the scrape", expr, l))
		}
	}
	return errs
}

// CheckRules validates a Prometheus rule file (groups:) as Prometheus
// loads it (rulefmt: strict fields, expressions, label and annotation
// templates), then every expression against the exported metrics. It
// returns the alert names.
func (fs Families) CheckRules(content []byte) ([]string, []error) {
	groups, errs := rulefmt.Parse(content, false, model.UTF8Validation, promParser, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if len(errs) > 0 {
		return nil, errs
	}
	var alerts []string
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				errs = append(errs, fmt.Errorf("group %s: a recording rule %s: only alerts are shipped", g.Name, r.Record))
				continue
			}
			alerts = append(alerts, r.Alert)
			for _, k := range []string{"summary", "description", "runbook_url"} {
				if r.Annotations[k] == "" {
					errs = append(errs, fmt.Errorf("alert %s: annotation %s is empty", r.Alert, k))
				}
			}
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				errs = append(errs, fmt.Errorf("alert %s: severity %q, want critical or warning", r.Alert, s))
			}
			for _, err := range fs.CheckQuery(r.Expr) {
				errs = append(errs, fmt.Errorf("alert %s: %w", r.Alert, err))
			}
		}
	}
	return alerts, errs
}

// grafanaVars are the dashboard variables and Grafana's own, as values
// that keep a query valid PromQL.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "${namespace}", ".*", "$namespace", ".*", "${pod}", ".*", "$pod", ".*")

var labelValues = regexp.MustCompile(`^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)

// CheckDashboard checks every query of a Grafana dashboard: the panels'
// targets (rows' nested panels too) and the query variables'
// label_values(); it returns how many it checked.
func (fs Families) CheckDashboard(b []byte) (int, []error) {
	var d struct {
		Panels     []grafanaPanel `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return 0, []error{err}
	}
	var errs []error
	n := 0
	var walk func([]grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			walk(p.Panels)
			for _, t := range p.Targets {
				n++
				if t.Expr == "" {
					errs = append(errs, fmt.Errorf("panel %q target %s: no expr", p.Title, t.RefID))
					continue
				}
				for _, err := range fs.CheckQuery(grafanaVars.Replace(t.Expr)) {
					errs = append(errs, fmt.Errorf("panel %q: %w", p.Title, err))
				}
			}
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(string)
		if m, ok := v.Query.(map[string]any); ok {
			q, _ = m["query"].(string)
		}
		n++
		lv := labelValues.FindStringSubmatch(q)
		if lv == nil {
			errs = append(errs, fmt.Errorf("variable %s: query %q is not label_values(<selector>, <label>)", v.Name, q))
			continue
		}
		sel := grafanaVars.Replace(lv[1])
		for _, err := range fs.CheckQuery(fmt.Sprintf("count by (%s) (%s)", lv[2], sel)) {
			errs = append(errs, fmt.Errorf("variable %s: %w", v.Name, err))
		}
	}
	return n, errs
}

type grafanaPanel struct {
	Title   string         `json:"title"`
	Panels  []grafanaPanel `json:"panels"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}
