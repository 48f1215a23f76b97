package check

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/promqltest"
)

// healthy is fifteen minutes of a healthy pod's series, one sample a
// minute: every store call, renewal and settle succeeds, buffers are low,
// the certificate is good for a year.
const healthy = `
load 1m
	gopotency_store_duration_seconds_count{namespace="gopotency", job="gopotency", pod="p1", op="acquire", result="ok"} 0+100x15
	gopotency_decisions_total{namespace="gopotency", job="gopotency", pod="p1", outcome="proceed"} 0+90x15
	gopotency_decisions_total{namespace="gopotency", job="gopotency", pod="p1", outcome="replay"} 0+10x15
	gopotency_lease_renewals_total{namespace="gopotency", job="gopotency", pod="p1", result="ok"} 0+10x15
	gopotency_leases_settled_total{namespace="gopotency", job="gopotency", pod="p1", how="recorded"} 0+100x15
	gopotency_extproc_protocol_errors_total{namespace="gopotency", job="gopotency", pod="p1", reason="contract_mismatch"} 0x15
	gopotency_extproc_buffered_bytes{namespace="gopotency", job="gopotency", pod="p1"} 1048576x15
	gopotency_extproc_buffered_bytes_limit{namespace="gopotency", job="gopotency", pod="p1"} 67108864x15
	gopotency_grpc_tls_certificate_expiry_timestamp_seconds{namespace="gopotency", job="gopotency", pod="p1"} 31536000x15
`

// TestAlertsFireOnWhatTheyAreFor evaluates every shipped alert with
// Prometheus's own engine over synthetic series: none fires on a healthy
// pod, and each failure makes exactly the alert for it fire (its
// expression; `for` only delays it).
func TestAlertsFireOnWhatTheyAreFor(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(chart, "files", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	groups, errs := rulefmt.Parse(b, false, model.UTF8Validation, promParser, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	exprs := map[string]string{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			exprs[r.Alert] = r.Expr
		}
	}
	const lbl = `{namespace="gopotency", job="gopotency", pod="p1"`
	for _, c := range []struct {
		failure string // series added to (or replacing, same labels) the healthy ones
		want    string // the one alert that fires ("" for none)
	}{
		{"", ""},
		{"gopotency_store_duration_seconds_count" + lbl + `, op="acquire", result="error"} 0+10x15`, "GoPotencyStoreErrors"},
		{"gopotency_decisions_total" + lbl + `, outcome="store-unavailable"} 0+5x15`, "GoPotencyUnavailableAnswers"},
		{"gopotency_decisions_total" + lbl + `, outcome="server-busy"} 0+5x15`, "GoPotencyUnavailableAnswers"},
		{"gopotency_lease_renewals_total" + lbl + `, result="error"} 0+1x15`, "GoPotencyLeaseRenewalsFailing"},
		{"gopotency_leases_settled_total" + lbl + `, how="failed"} 0+1x15`, "GoPotencyOutcomesNotSaved"},
		{"gopotency_extproc_protocol_errors_total" + lbl + `, reason="unknown_policy"} 0+1x15`, "GoPotencyProtocolErrors"},
		{"gopotency_extproc_buffered_bytes" + lbl + `} 60000000x15`, "GoPotencyBufferedBytesNearBudget"},
		{"gopotency_leases_settled_total" + lbl + `, how="unknown"} 0+5x15`, "GoPotencyOutcomeUnknown"},
		{"gopotency_leases_settled_total" + lbl + `, how="incomplete"} 0+5x15`, "GoPotencyOutcomeUnknown"},
		{"gopotency_grpc_tls_certificate_expiry_timestamp_seconds" + lbl + `} 259200x15`, "GoPotencyCertificateExpiring"},
	} {
		name := cmp.Or(c.want, "healthy")
		if c.failure != "" {
			name += "/" + c.failure[:strings.Index(c.failure, "{")]
		}
		t.Run(name, func(t *testing.T) {
			load := healthy
			if c.failure != "" {
				// A series with a healthy one's labels replaces it.
				key := c.failure[:strings.LastIndex(c.failure, "}")+1]
				var lines []string
				for _, l := range strings.Split(load, "\n") {
					if !strings.HasPrefix(strings.TrimSpace(l), key) {
						lines = append(lines, l)
					}
				}
				load = strings.Join(lines, "\n") + "\t" + c.failure + "\n"
			}
			st := promqltest.LoadedStorage(t, load)
			engine := promqltest.NewTestEngine(t, false, 5*time.Minute, 1_000_000)
			at := time.Unix(0, 0).Add(14 * time.Minute)
			var firing []string
			for _, alert := range slices.Sorted(maps.Keys(exprs)) {
				q, err := engine.NewInstantQuery(t.Context(), st, nil, exprs[alert], at)
				if err != nil {
					t.Fatalf("%s: %v", alert, err)
				}
				res := q.Exec(t.Context())
				if res.Err != nil {
					t.Fatalf("%s: %v", alert, res.Err)
				}
				v, err := res.Vector()
				if err != nil {
					t.Fatalf("%s: %v", alert, err)
				}
				if len(v) > 0 {
					firing = append(firing, fmt.Sprintf("%s%v", alert, labelsOf(v)))
				}
				q.Close()
			}
			var want []string
			if c.want != "" {
				want = []string{c.want}
			}
			var names []string
			for _, f := range firing {
				names = append(names, f[:strings.Index(f, "[")])
			}
			if !slices.Equal(names, want) {
				t.Errorf("firing %v, want %v", firing, want)
			}
		})
	}
	if len(exprs) != 8 {
		t.Errorf("%d alerts, the scenarios above cover 8: add one for the new alert", len(exprs))
	}
}

func labelsOf(v promql.Vector) []string {
	var out []string
	for _, s := range v {
		out = append(out, s.Metric.String())
	}
	return out
}

// TestDashboardQueriesReturnData evaluates every panel query of the
// dashboard with Prometheus's engine over a pod's synthetic series (the
// dashboard's variables set to match all): each returns data, so no panel
// stays empty for a selector, a join or a histogram that does not fit the
// series the server exports.
func TestDashboardQueriesReturnData(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(chart, "files", "dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct{ Panels []grafanaPanel }
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	const lbl = `{namespace="gopotency", job="gopotency", pod="p1"`
	load := healthy + "\t" + strings.Join([]string{
		"gopotency_decisions_total" + lbl + `, outcome="store-unavailable"} 0+5x15`,
		"gopotency_store_duration_seconds_count" + lbl + `, op="get", result="error"} 0+1x15`,
		"gopotency_store_duration_seconds_bucket" + lbl + `, op="acquire", result="ok", le="0.001"} 0+90x15`,
		"gopotency_store_duration_seconds_bucket" + lbl + `, op="acquire", result="ok", le="+Inf"} 0+100x15`,
		"gopotency_extproc_streams_active" + lbl + `} 12x15`,
		"gopotency_recorded_body_bytes_total" + lbl + `} 0+4096x15`,
		"process_resident_memory_bytes" + lbl + `} 50000000x15`,
		"process_cpu_seconds_total" + lbl + `} 0+6x15`,
	}, "\n\t") + "\n"
	st := promqltest.LoadedStorage(t, load)
	engine := promqltest.NewTestEngine(t, false, 5*time.Minute, 1_000_000)
	at := time.Unix(0, 0).Add(14 * time.Minute)
	n := 0
	var walk func([]grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			walk(p.Panels)
			for _, target := range p.Targets {
				n++
				expr := grafanaVars.Replace(target.Expr)
				q, err := engine.NewInstantQuery(t.Context(), st, nil, expr, at)
				if err != nil {
					t.Errorf("panel %q: %v", p.Title, err)
					continue
				}
				res := q.Exec(t.Context())
				v, err := res.Vector()
				switch {
				case res.Err != nil:
					t.Errorf("panel %q: %s: %v", p.Title, expr, res.Err)
				case err != nil || len(v) == 0:
					t.Errorf("panel %q: %s returns no data over the server's series", p.Title, expr)
				}
				q.Close()
			}
		}
	}
	walk(d.Panels)
	if n < 10 {
		t.Errorf("%d queries evaluated", n)
	}
}
