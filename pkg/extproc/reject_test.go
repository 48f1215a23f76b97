package extproc

import (
	"encoding/json"
	"strings"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// requireProblem checks an immediate problem+json answer with status and
// returns its problem type slug.
func requireProblem(t *testing.T, resp *extprocv3.ProcessingResponse, status int) string {
	t.Helper()
	ir := immediateOf(t, resp)
	require.EqualValues(t, status, ir.GetStatus().GetCode())
	require.Equal(t, "application/problem+json", header(t, ir, "content-type"))
	var p idempotency.Problem
	require.NoError(t, json.Unmarshal(ir.GetBody(), &p), "body %q", ir.GetBody())
	require.Equal(t, status, p.Status)
	require.True(t, strings.HasPrefix(p.Type, idempotency.ProblemTypeBase), p.Type)
	require.Equal(t, "gopotency_"+strings.ReplaceAll(p.Slug(), "-", "_"), ir.GetDetails())
	return p.Slug()
}

func TestBadOrMissingKeyIs400(t *testing.T) {
	e := newEnv(t)
	for name, c := range map[string]struct {
		policy string
		req    *extprocv3.ProcessingRequest
		slug   string
	}{
		"unterminated quote": {"", reqHeaders("POST", "/o", `"abc`, false), "key-malformed"},
		"control char":       {"", reqHeaders("POST", "/o", "a\x01b", false), "key-malformed"},
		"too long":           {"", reqHeaders("POST", "/o", strings.Repeat("k", 256), false), "key-malformed"},
		"empty quoted":       {"", reqHeaders("POST", "/o", `""`, false), "key-malformed"},
		"two key fields":     {"", reqHeaders("POST", "/o", "a", false, "idempotency-key", "b"), "key-malformed"},
		"missing, required":  {"required", reqHeaders("POST", "/o", "", false), "key-missing"},
	} {
		t.Run(name, func(t *testing.T) {
			s := e.open(t, c.policy)
			require.Equal(t, c.slug, requireProblem(t, s.do(c.req), 400))
		})
	}
	e.endAll(t)
	require.Zero(t, e.store.Len(), "nothing is stored for a rejected key")
}

func TestSameKeyDifferentBodyIs422(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, "")
	s.do(reqHeaders("POST", "/pay", "k-mm", false))
	s.do(reqBody(`{"amount":10}`, true))

	r := e.open(t, "")
	r.do(reqHeaders("POST", "/pay", "k-mm", false))
	require.Equal(t, "key-reused", requireProblem(t, r.do(reqBody(`{"amount":99}`, true)), 422))

	// While in flight, the same request gets 409 with Retry-After.
	d := e.open(t, "")
	d.do(reqHeaders("POST", "/pay", "k-mm", false))
	resp := d.do(reqBody(`{"amount":10}`, true))
	require.Equal(t, "request-in-progress", requireProblem(t, resp, 409))
	require.NotEmpty(t, header(t, resp.GetImmediateResponse(), "retry-after"))

	// Finishing the first makes the mismatch stick to the stored record.
	s.do(respHeaders("200", true))
	m := e.open(t, "")
	m.do(reqHeaders("POST", "/pay", "k-mm", false))
	require.Equal(t, "key-reused", requireProblem(t, m.do(reqBody(`{"amount":99}`, true)), 422))
}

func TestUnknownPolicyIs500(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, "no-such-policy")
	require.Equal(t, "proxy-misconfigured", requireProblem(t, s.do(reqHeaders("POST", "/o", "k-x", false)), 500))
	// Even a request the default policy would pass is refused: a route
	// naming a policy the server lacks is a deployment error.
	g := e.open(t, "no-such-policy")
	requireProblem(t, g.do(reqHeaders("GET", "/o", "", true)), 500)
	e.endAll(t)
	require.Zero(t, e.store.Len())
}

func TestOversizedResponseStoresTombstone(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, "small") // MaxResponseBody 8
	s.do(reqHeaders("POST", "/big", "k-big", false))
	s.do(reqBody("x", true))
	s.do(respHeaders("200", false, "content-type", "text/plain"))
	s.do(respBody("12345", false))
	s.do(respBody("67890", false))
	s.do(respBody("", true))
	ent := e.entry(t, "k-big")
	require.Equal(t, idempotency.Completed, ent.State)
	require.Equal(t, idempotency.MarkTooLarge, ent.Record.Mark, "a tombstone, not a truncated body")
	require.Empty(t, ent.Record.Body)

	r := e.open(t, "small")
	r.do(reqHeaders("POST", "/big", "k-big", false))
	require.Equal(t, "response-too-large", requireProblem(t, r.do(reqBody("x", true)), 413))
}

func TestUpstreamErrorIsNotStored(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, "")
	s.do(reqHeaders("POST", "/flaky", "k-503", false))
	s.do(reqBody("x", true))
	s.do(withAttr(respHeaders("503", false), "response.code_details", "via_upstream"))
	s.do(respBody("busy", true))
	require.Nil(t, e.entry(t, "k-503"), "5xx releases the key so a retry runs")

	r := e.open(t, "")
	r.do(reqHeaders("POST", "/flaky", "k-503", false))
	resp := r.do(reqBody("x", true))
	require.NotNil(t, resp.GetRequestBody(), "the retry runs upstream")
}
