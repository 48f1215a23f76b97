package e2e

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// form is one deployment form under test: a running stack whose Envoy
// config a control plane (Envoy Gateway, Istio) produced from the shipped
// objects, as opposed to envoy/envoy.yaml.
type form struct {
	s  *stack
	up *counter // the upstream, counting executions by key
	// client sends the Host the translated virtual hosts match.
	client *http.Client
	// guarded is the URL of a route the policy guards (POST, key
	// optional, fingerprint over the body); unguarded one of a route
	// gopotency is not attached to.
	guarded, unguarded string
	// maxBody is the guarded policy's max_request_body.
	maxBody int
}

// hostClient sends every request with Host host: Go's client takes the
// Host from the URL, never from a header.
func hostClient(host string) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: hostTransport{host, &http.Transport{MaxIdleConnsPerHost: 64}}}
}

type hostTransport struct {
	host string
	rt   http.RoundTripper
}

func (h hostTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Host = h.host
	return h.rt.RoundTrip(r)
}

// post sends body to the guarded route with key, with a Content-Length
// or chunked (the two ways a body reaches the buffer).
func (f form) post(t *testing.T, key, body string, chunked bool) result {
	t.Helper()
	if !chunked {
		return doWith(t, f.client, "POST", f.guarded, key, body)
	}
	req, err := http.NewRequest("POST", f.guarded, io.MultiReader(strings.NewReader(body))) // length hidden
	require.NoError(t, err)
	req.Header.Set("Idempotency-Key", key)
	resp, err := f.client.Do(req)
	require.NoError(t, err, key)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return result{resp.StatusCode, resp.Header, b}
}

var framings = map[bool]string{false: "cl", true: "chunked"}

// checkForm walks the rows every deployment form must keep, counting
// executions at the upstream. The last row stops gopotency.
func checkForm(t *testing.T, f form) {
	id := itoa(int(time.Now().UnixNano()))

	t.Run("first-replay-mismatch", func(t *testing.T) {
		key := "form-" + id
		first := f.post(t, key, `{"item":"book"}`, false)
		require.Equal(t, 201, first.Status, "body: %s", first.Body)
		assert.Empty(t, first.Header.Get("Idempotent-Replayed"))
		again := f.post(t, key, `{"item":"book"}`, false)
		require.Equal(t, 201, again.Status, "body: %s", again.Body)
		assert.Equal(t, "true", again.Header.Get("Idempotent-Replayed"))
		assert.Equal(t, string(first.Body), string(again.Body))
		other := f.post(t, key, `{"item":"car"}`, false)
		require.Equal(t, 422, other.Status, "body: %s", other.Body)
		assert.Equal(t, "key-reused", problemType(t, other))
		assert.Equal(t, 1, f.up.count(key))
	})

	t.Run("concurrent-duplicates", func(t *testing.T) {
		key := "form-dup-" + id
		const n = 20
		var wg sync.WaitGroup
		got := make([]result, n)
		for i := range n {
			wg.Go(func() { got[i] = doWith(t, f.client, "POST", f.guarded+"?sleep=300ms", key, `{"item":"book"}`) })
		}
		wg.Wait()
		live := 0
		for _, r := range got {
			switch {
			case r.Status == 201 && r.Header.Get("Idempotent-Replayed") == "":
				live++
			case r.Status == 201 || r.Status == 409:
			default:
				t.Errorf("a duplicate got %d: %s", r.Status, r.Body)
			}
		}
		assert.Equal(t, 1, live, "one live answer, the rest 409 or replays")
		assert.Equal(t, 1, f.up.count(key), "%d duplicates at once run once", n)
	})

	// Bodies far above a proxy's default buffer (32 KiB under Envoy
	// Gateway), up to 90% of the cap: whole, each is fingerprinted as
	// itself, so the retry replays and a body that differs only at its
	// end is refused, never answered with the first one's response.
	t.Run("large-bodies", func(t *testing.T) {
		for _, size := range []int{100 << 10, f.maxBody * 9 / 10} {
			for _, chunked := range []bool{false, true} {
				key := "form-big-" + itoa(size) + "-" + framings[chunked] + "-" + id
				body := strings.Repeat("x", size-1)
				first := f.post(t, key, body+"a", chunked)
				require.Equal(t, 201, first.Status, "%s: %.300s", key, first.Body)
				again := f.post(t, key, body+"a", chunked)
				assert.Equal(t, 201, again.Status, key)
				assert.Equal(t, "true", again.Header.Get("Idempotent-Replayed"), key)
				assert.True(t, bytes.Equal(first.Body, again.Body), "%s: the replay is the first answer", key)
				other := f.post(t, key, body+"b", chunked)
				require.Equal(t, 422, other.Status, "%s: a body differing in its last byte: %.300s", key, other.Body)
				assert.Equal(t, "key-reused", problemType(t, other), key)
				assert.Equal(t, 1, f.up.count(key), key)
			}
		}
	})

	t.Run("over-max-request-body", func(t *testing.T) {
		for _, chunked := range []bool{false, true} {
			key := "form-over-" + framings[chunked] + "-" + id
			r := f.post(t, key, strings.Repeat("x", f.maxBody+1), chunked)
			require.Equal(t, 413, r.Status, "%s: %.300s", key, r.Body)
			assert.Equal(t, "request-too-large", problemType(t, r), key)
			assert.Zero(t, f.up.count(key), "%s reached the upstream", key)
		}
	})

	t.Run("unguarded-route-opens-no-stream", func(t *testing.T) {
		key := "form-static-" + id
		before := streams(t, f.s)
		for range 2 {
			r := doWith(t, f.client, "POST", f.unguarded, key, `{}`)
			require.Equal(t, 201, r.Status, "body: %s", r.Body)
			assert.Empty(t, r.Header.Get("Idempotent-Replayed"))
		}
		assert.Equal(t, 2, f.up.count(key), "both ran: gopotency is not on this route")
		assert.Equal(t, before, streams(t, f.s), "no ext_proc stream")
		// The stat is live: a guarded request moves it.
		require.Equal(t, 201, f.post(t, "form-moves-"+id, `{}`, false).Status)
		assert.Equal(t, before+1, streams(t, f.s))
	})

	t.Run("gopotency-down", func(t *testing.T) {
		f.s.stop()
		key := "form-down-" + id
		r := f.post(t, key, `{}`, false)
		assert.Equal(t, 503, r.Status, "fail closed; body: %s", r.Body)
		assert.Zero(t, f.up.count(key), "nothing ran")
	})
}

// checkCutBodyFailsClosed: behind a proxy whose buffer is smaller than
// the body (Envoy Gateway's default 32 KiB), gopotency is handed a cut
// body; it must refuse it with its 413 problem and run nothing, never
// fingerprint the part as the whole (201, a replay, or a 422).
func checkCutBodyFailsClosed(t *testing.T, f form) {
	id := itoa(int(time.Now().UnixNano()))
	for _, chunked := range []bool{false, true} {
		key := "form-cut-" + framings[chunked] + "-" + id
		body := strings.Repeat("x", 100<<10)
		for range 2 { // the retry too
			r := f.post(t, key, body, chunked)
			require.Equal(t, 413, r.Status, "%s: %.300s", key, r.Body)
			assert.Equal(t, "request-too-large", problemType(t, r), key)
			assert.Contains(t, string(r.Body), "raise the proxy's buffer limit", "%s: the detail names the fix", key)
		}
		assert.Zero(t, f.up.count(key), "%s reached the upstream", key)
	}
}
