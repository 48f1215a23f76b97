// Package metrics exposes the engine's hooks as Prometheus collectors,
// registered on a Registerer the caller injects (never the global one).
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// Metrics holds the collectors.
type Metrics struct {
	decisions *prometheus.CounterVec
	storeDur  *prometheus.HistogramVec
	renewals  *prometheus.CounterVec
	settled   *prometheus.CounterVec
	recorded  prometheus.Counter
	streams   prometheus.Gauge
}

// New creates the collectors and registers them on reg.
func New(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gopotency_decisions_total",
			Help: "Requests by engine outcome: pass, proceed, replay, or the problem type slug of a rejection."}, []string{"outcome"}),
		storeDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "gopotency_store_duration_seconds",
			Help:    "Latency of store operations.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1}}, []string{"op", "result"}),
		renewals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gopotency_lease_renewals_total",
			Help: "Lease renewals of in-flight requests, by result."}, []string{"result"}),
		settled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gopotency_leases_settled_total",
			Help: "How leases ended: completed, completed_too_large, released_status, released_unsent, abandoned, lost, complete_failed, release_failed."}, []string{"how"}),
		recorded: prometheus.NewCounter(prometheus.CounterOpts{Name: "gopotency_recorded_body_bytes_total",
			Help: "Response body bytes recorded for replay."}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{Name: "gopotency_extproc_streams_active",
			Help: "Open ext_proc streams (HTTP requests in processing)."}),
	}
	for _, c := range []prometheus.Collector{m.decisions, m.storeDur, m.renewals, m.settled, m.recorded, m.streams} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Hooks returns engine hooks feeding the collectors.
func (m *Metrics) Hooks() idempotency.Hooks {
	return idempotency.Hooks{
		Decided: func(outcome string) { m.decisions.WithLabelValues(outcome).Inc() },
		StoreCall: func(op string, took time.Duration, err error) {
			m.storeDur.WithLabelValues(op, result(err)).Observe(took.Seconds())
		},
		LeaseRenewed: func(err error) { m.renewals.WithLabelValues(result(err)).Inc() },
		Settled: func(how string, n int) {
			m.settled.WithLabelValues(how).Inc()
			m.recorded.Add(float64(n))
		},
	}
}

// StreamsActive adjusts the open-streams gauge.
func (m *Metrics) StreamsActive(delta int) { m.streams.Add(float64(delta)) }

func result(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}
