package e2e

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// bigBufferLimit raises the listener's per_connection_buffer_limit_bytes
// a margin above the 1 MiB cap, as gopotency envoy-config generates it:
// a body over the cap must arrive cut (BUFFERED_PARTIAL), seen as over.
func bigBufferLimit(t *testing.T) func([]byte) []byte {
	return func(cfg []byte) []byte {
		out := bytes.Replace(cfg, []byte("per_connection_buffer_limit_bytes: 1048576"), []byte("per_connection_buffer_limit_bytes: 1114112"), 1)
		if bytes.Equal(out, cfg) && !bytes.Contains(cfg, []byte("per_connection_buffer_limit_bytes: 11")) {
			t.Fatalf("buffer limit anchor missing in the Envoy config")
		}
		return out
	}
}

// send posts size bytes with a key, with a Content-Length or chunked, with
// or without Expect: 100-continue, and reads the answer whole.
func send(t *testing.T, url, key string, size int, chunked, expect bool) (result, time.Duration) {
	t.Helper()
	var body io.Reader = bytes.NewReader(bytes.Repeat([]byte("x"), size))
	if chunked {
		body = io.MultiReader(body) // hides the length: Transfer-Encoding: chunked
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "POST", url, body)
	require.NoError(t, err)
	req.Header.Set("Idempotency-Key", key)
	if expect {
		req.Header.Set("Expect", "100-continue")
	}
	tr := &http.Transport{ExpectContinueTimeout: 5 * time.Second}
	defer tr.CloseIdleConnections()
	start := time.Now()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	took := time.Since(start)
	if err != nil {
		// Envoy may answer and close before the whole body was written:
		// that is still an answer only if a status came back.
		t.Fatalf("%s: no answer after %v: %v", key, took, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return result{resp.StatusCode, resp.Header, b}, took
}

// TestOversizedRequestBodiesGet413: every way of sending a body over
// max_request_body (2 MiB and 10 MiB; Content-Length or chunked; with and
// without Expect: 100-continue) gets a prompt 413 problem from GoPotency
// and never reaches the upstream; no request hangs. A body at the cap, in
// both framings, runs once and replays.
func TestOversizedRequestBodiesGet413(t *testing.T) {
	up := newCounter()
	// The counter echoes the body; answer briefly so a 1 MiB request's
	// response fits the storage cap and replays.
	brief := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up.byKeyAdd(r.Header.Get("Idempotency-Key"))
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, "stored")
	})
	s := startStack(t, stackOptions{upstream: brief, tweak: bigBufferLimit(t)})
	id := itoa(int(time.Now().UnixNano()))
	for _, size := range []int{2 << 20, 10 << 20} {
		for _, chunked := range []bool{false, true} {
			for _, expect := range []bool{false, true} {
				key := strings.Join([]string{"big", itoa(size), map[bool]string{true: "chunked", false: "cl"}[chunked], map[bool]string{true: "expect", false: "plain"}[expect], id}, "-")
				r, took := send(t, s.URL+"/orders", key, size, chunked, expect)
				assert.Equal(t, 413, r.Status, "%s: body %.200s", key, r.Body)
				if r.Status == 413 {
					assert.Equal(t, "request-too-large", problemType(t, r), key)
				}
				assert.Less(t, took, 5*time.Second, "%s must be answered promptly", key)
				assert.Zero(t, up.count(key), "%s reached the upstream", key)
			}
		}
	}
	for _, chunked := range []bool{false, true} {
		key := "at-cap-" + map[bool]string{true: "chunked", false: "cl"}[chunked] + "-" + id
		first, _ := send(t, s.URL+"/orders", key, 1<<20, chunked, false)
		require.Equal(t, 201, first.Status, "%s: body %.200s", key, first.Body)
		again, _ := send(t, s.URL+"/orders", key, 1<<20, chunked, false)
		assert.Equal(t, "true", again.Header.Get("Idempotent-Replayed"), key)
		assert.Equal(t, 1, up.count(key), key)
	}
}

// smallBufferLimit sets the listener's buffer limit to 32 KiB (Envoy
// Gateway's default), below the 1 MiB cap.
func smallBufferLimit(t *testing.T) func([]byte) []byte {
	return func(cfg []byte) []byte {
		out := bytes.Replace(cfg, []byte("per_connection_buffer_limit_bytes: 1114112"), []byte("per_connection_buffer_limit_bytes: 32768"), 1)
		require.NotEqual(t, cfg, out, "buffer limit anchor missing in the Envoy config")
		return out
	}
}

// TestCutBodyIsRefused: behind a listener buffer limit below
// max_request_body, Envoy's BUFFERED_PARTIAL hands GoPotency the first
// 32 KiB of a larger body and streams the rest past it. Such a request is
// refused with the 413 problem naming the setting and never runs, whether
// it declared its length or came chunked; the retry is refused the same
// way, never replayed. Where Envoy's buffer filter holds the body (the
// body-first routes) the body is whole and the request runs once.
func TestCutBodyIsRefused(t *testing.T) {
	up := newCounter()
	id := itoa(int(time.Now().UnixNano()))
	body := strings.Repeat("a", 100<<10)
	other := body[:len(body)-1] + "b" // differs in the last byte only
	cut := func(t *testing.T, s *stack, key string, chunked bool) {
		for try := range 2 {
			r, _ := send(t, s.URL+"/orders", key, len(body), chunked, false)
			require.Equal(t, 413, r.Status, "%s try %d: body %.300s", key, try, r.Body)
			assert.Equal(t, "request-too-large", problemType(t, r), key)
			assert.Contains(t, string(r.Body), "raise the proxy's buffer limit", key)
		}
		assert.Zero(t, up.count(key), "%s reached the upstream", key)
	}

	t.Run("headers-first", func(t *testing.T) {
		s := startStack(t, stackOptions{upstream: up, envoy: shippedLayout(t, false), tweak: smallBufferLimit(t)})
		cut(t, s, "cut-cl-"+id, false)
		cut(t, s, "cut-chunked-"+id, true)
		small := "cut-small-" + id
		require.Equal(t, 201, do(t, "POST", s.URL+"/orders", small, body[:16<<10]).Status, "a body within the limit runs")
		assert.Equal(t, "true", do(t, "POST", s.URL+"/orders", small, body[:16<<10]).Header.Get("Idempotent-Replayed"))
		assert.Equal(t, 1, up.count(small))
	})
	t.Run("body-first", func(t *testing.T) {
		s := startStack(t, stackOptions{upstream: up, tweak: smallBufferLimit(t)})
		cut(t, s, "cut-bf-chunked-"+id, true) // chunked requests stay headers-first
		key := "cut-bf-cl-" + id
		first := do(t, "POST", s.URL+"/orders", key, body)
		require.Equal(t, 201, first.Status, "body %.300s", first.Body)
		assert.Equal(t, "true", do(t, "POST", s.URL+"/orders", key, body).Header.Get("Idempotent-Replayed"))
		assert.Equal(t, 422, do(t, "POST", s.URL+"/orders", key, other).Status, "a difference in the last byte is seen")
		assert.Equal(t, 1, up.count(key))
	})
}
