package metrics

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

func newMetrics(t *testing.T) (*Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := New(reg)
	require.NoError(t, err)
	return m, reg
}

func TestHooksUpdateTheirSeries(t *testing.T) {
	m, _ := newMetrics(t)
	h := m.Hooks()

	h.Decided("proceed")
	h.Decided("proceed")
	h.Decided("key-reused")
	require.Equal(t, 2.0, testutil.ToFloat64(m.decisions.WithLabelValues("proceed")))
	require.Equal(t, 1.0, testutil.ToFloat64(m.decisions.WithLabelValues("key-reused")))
	require.Equal(t, 0.0, testutil.ToFloat64(m.decisions.WithLabelValues("replay")))

	h.StoreCall("acquire", 2*time.Millisecond, nil)
	h.StoreCall("acquire", 3*time.Millisecond, errors.New("down"))
	h.StoreCall("complete", time.Millisecond, nil)
	require.Equal(t, 3, testutil.CollectAndCount(m.storeDur))
	require.Equal(t, 1, testutil.CollectAndCount(m.storeDur.WithLabelValues("acquire", "error").(prometheus.Histogram)))

	h.LeaseRenewed(nil)
	h.LeaseRenewed(errors.New("lost"))
	h.LeaseRenewed(errors.New("lost"))
	require.Equal(t, 1.0, testutil.ToFloat64(m.renewals.WithLabelValues("ok")))
	require.Equal(t, 2.0, testutil.ToFloat64(m.renewals.WithLabelValues("error")))

	h.Settled("completed", 120)
	h.Settled("completed", 30)
	h.Settled("abandoned", 0)
	require.Equal(t, 2.0, testutil.ToFloat64(m.settled.WithLabelValues("completed")))
	require.Equal(t, 1.0, testutil.ToFloat64(m.settled.WithLabelValues("abandoned")))
	require.Equal(t, 150.0, testutil.ToFloat64(m.recorded))

	m.StreamsActive(1)
	m.StreamsActive(1)
	m.StreamsActive(-1)
	require.Equal(t, 1.0, testutil.ToFloat64(m.streams))
}

func TestStoreDurationIsObservedInSeconds(t *testing.T) {
	m, reg := newMetrics(t)
	m.Hooks().StoreCall("get", 250*time.Millisecond, nil)
	want := `
# HELP gopotency_store_duration_seconds Latency of store operations.
# TYPE gopotency_store_duration_seconds histogram
gopotency_store_duration_seconds_bucket{op="get",result="ok",le="0.0001"} 0
gopotency_store_duration_seconds_bucket{op="get",result="ok",le="0.00025"} 0
gopotency_store_duration_seconds_bucket{op="get",result="ok",le="0.0005"} 0
gopotency_store_duration_seconds_bucket{op="get",result="ok",le="0.001"} 0
gopotency_store_duration_seconds_bucket{op="get",result="ok",le="0.0025"} 0
gopotency_store_duration_seconds_bucket{op="get",result="ok",le="0.005"} 0
gopotency_store_duration_seconds_bucket{op="get",result="ok",le="0.01"} 0
gopotency_store_duration_seconds_bucket{op="get",result="ok",le="0.025"} 0
gopotency_store_duration_seconds_bucket{op="get",result="ok",le="0.05"} 0
gopotency_store_duration_seconds_bucket{op="get",result="ok",le="0.1"} 0
gopotency_store_duration_seconds_bucket{op="get",result="ok",le="0.25"} 1
gopotency_store_duration_seconds_bucket{op="get",result="ok",le="1"} 1
gopotency_store_duration_seconds_bucket{op="get",result="ok",le="+Inf"} 1
gopotency_store_duration_seconds_sum{op="get",result="ok"} 0.25
gopotency_store_duration_seconds_count{op="get",result="ok"} 1
`
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(want), "gopotency_store_duration_seconds"))
}

func TestRegistersEveryCollectorOnTheGivenRegistry(t *testing.T) {
	m, reg := newMetrics(t)
	h := m.Hooks()
	h.Decided("pass")
	h.StoreCall("acquire", time.Millisecond, nil)
	h.LeaseRenewed(nil)
	h.Settled("completed", 1)

	names := map[string]bool{}
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, n := range []string{"gopotency_decisions_total", "gopotency_store_duration_seconds", "gopotency_lease_renewals_total",
		"gopotency_leases_settled_total", "gopotency_recorded_body_bytes_total", "gopotency_extproc_streams_active"} {
		require.True(t, names[n], "missing %s in %v", n, names)
	}
	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	require.Empty(t, problems)

	// A second set on the same registry is a wiring mistake, reported as
	// an error rather than a panic.
	_, err = New(reg)
	require.Error(t, err)
}
