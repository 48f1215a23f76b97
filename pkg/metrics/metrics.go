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
	buffered  prometheus.Gauge
	budget    prometheus.Gauge
	protocol  *prometheus.CounterVec
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
			Help: "How leases ended: recorded, too_large, incomplete (the body was cut off), unknown (forwarded, no response), released, expiring (unknown_outcome retry_after_lease), lost (another request holds the key), failed (the store could not be told)."}, []string{"how"}),
		recorded: prometheus.NewCounter(prometheus.CounterOpts{Name: "gopotency_recorded_body_bytes_total",
			Help: "Response body bytes recorded for replay."}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{Name: "gopotency_extproc_streams_active",
			Help: "Open ext_proc streams (HTTP requests in processing)."}),
		buffered: prometheus.NewGauge(prometheus.GaugeOpts{Name: "gopotency_extproc_buffered_bytes",
			Help: "Request and response body bytes the ext_proc streams hold (bounded by ext_proc.max_buffered_bytes)."}),
		budget: prometheus.NewGauge(prometheus.GaugeOpts{Name: "gopotency_extproc_buffered_bytes_limit",
			Help: "ext_proc.max_buffered_bytes: past it, new streams are answered 503 server-busy (alert on buffered bytes near it)."}),
		protocol: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gopotency_extproc_protocol_errors_total",
			Help: "Streams that broke the protocol or did not match the configuration, by reason (undecided_at_response_headers, contract_mismatch, unknown_policy, body_after_decision, request_body_cut, ...)."}, []string{"reason"}),
	}
	for _, c := range []prometheus.Collector{m.decisions, m.storeDur, m.renewals, m.settled, m.recorded, m.streams, m.buffered, m.budget, m.protocol} {
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

// Buffered adjusts the buffered-bytes gauge.
func (m *Metrics) Buffered(delta int64) { m.buffered.Add(float64(delta)) }

// BufferedLimit sets the buffered-bytes budget the gauge is bounded by.
func (m *Metrics) BufferedLimit(n int64) { m.budget.Set(float64(n)) }

// ProtocolError counts a stream that broke the protocol.
func (m *Metrics) ProtocolError(reason string) { m.protocol.WithLabelValues(reason).Inc() }

func result(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}
