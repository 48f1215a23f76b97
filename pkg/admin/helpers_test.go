package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/admin"
	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/store/memstore"
)

const (
	testToken = "t0ken-for-the-admin-api-tests"
	// bearer is the caller credential the tests' clients send upstream:
	// it makes their scope and must never reach a log.
	bearer = "Bearer client-credential-abc"
	// rawKey is a client key that must never reach a log either.
	rawKey = "order-7f3c-raw-key"
)

// clock is a manual clock for the store and the engine.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// syncBuffer collects log output from concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// records returns the JSON log records whose msg is msg.
func (s *syncBuffer) records(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(s.String()), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &rec), line)
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// fixture is the API over a store, with an engine on the same store (and
// clock) to put keys in every state the way requests do.
type fixture struct {
	clock  *clock
	store  idempotency.Store
	eng    *idempotency.Engine
	pol    *idempotency.Policy
	named  map[string]*idempotency.Policy
	reg    *prometheus.Registry
	logs   *syncBuffer
	srv    *httptest.Server
	tokens *admin.Tokens
}

type setup struct {
	store    idempotency.Store // memstore on the fixture clock when nil
	tokens   *admin.Tokens     // testToken when nil, unless off
	off      bool
	logLevel slog.Level
	named    map[string]*idempotency.Policy
}

func newFixture(t *testing.T, s setup) *fixture {
	t.Helper()
	f := &fixture{clock: &clock{now: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)}, reg: prometheus.NewRegistry(), logs: &syncBuffer{}, named: s.named}
	f.store = s.store
	if f.store == nil {
		ms := memstore.New(memstore.Options{Now: f.clock.Now})
		t.Cleanup(func() { _ = ms.Close() })
		f.store = ms
	}
	def := idempotency.DefaultPolicy()
	f.pol = &def
	f.eng = idempotency.New(f.store, idempotency.WithClock(f.clock.Now, func(context.Context, time.Duration) error { return nil }))
	f.tokens = s.tokens
	if f.tokens == nil && !s.off {
		var err error
		f.tokens, err = admin.StaticToken(testToken)
		require.NoError(t, err)
	}
	log := slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: s.logLevel}))
	api, err := admin.New(admin.Options{Store: f.store, Default: f.pol, Policies: s.named, Tokens: f.tokens, Logger: log, Registerer: f.reg})
	require.NoError(t, err)
	f.srv = httptest.NewServer(api)
	t.Cleanup(f.srv.Close)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", f.logs.String())
		}
	})
	return f
}

// answer is one HTTP answer of the API.
type answer struct {
	status int
	header http.Header
	raw    string
	json   map[string]any
}

// str reads a string member by dotted path ("previous.state").
func (a answer) get(path string) any {
	var v any = a.json
	for _, part := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[part]
	}
	return v
}

func (a answer) str(path string) string { s, _ := a.get(path).(string); return s }

// do sends a request with token (none when "") and a JSON body.
func (f *fixture) do(t *testing.T, method, path, token string, body any) answer {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		require.NoError(t, err)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, f.srv.URL+path, rd)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	a := answer{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &a.json)
	return a
}

func (f *fixture) inspect(t *testing.T, query string, body any) answer {
	t.Helper()
	return f.do(t, http.MethodPost, admin.RouteInspect+query, testToken, body)
}

func (f *fixture) purge(t *testing.T, query string, body any) answer {
	t.Helper()
	return f.do(t, http.MethodPost, admin.RoutePurge+query, testToken, body)
}

// keyBody names rawKey for the bearer caller under the default policy.
func keyBody(extra ...any) map[string]any {
	b := map[string]any{"key": rawKey, "headers": map[string]string{"Authorization": bearer}}
	for i := 0; i+1 < len(extra); i += 2 {
		b[extra[i].(string)] = extra[i+1]
	}
	return b
}

// request is the client's request that keyBody names.
func request(key string) *idempotency.Request {
	h := http.Header{}
	h.Set("Idempotency-Key", key)
	h.Set("Authorization", bearer)
	return &idempotency.Request{Method: http.MethodPost, Path: "/orders", Header: h, Body: []byte(`{"amount":10}`)}
}

// begin claims key the way a request does and returns the lease.
func (f *fixture) begin(t *testing.T, key string) *idempotency.Lease {
	t.Helper()
	d := f.eng.Begin(context.Background(), f.pol, request(key))
	require.Equal(t, idempotency.Proceed, d.Kind, "%+v", d)
	return d.Lease
}

// claimOf reads the claim l holds, so a test can renew it after a purge as
// its holder's next renewal does (Store.Extend re-creates a vanished claim).
func claimOf(t *testing.T, s idempotency.Store, p *idempotency.Policy, l *idempotency.Lease) idempotency.Claim {
	t.Helper()
	ent, err := s.Get(context.Background(), l.StorageKey())
	require.NoError(t, err)
	return idempotency.Claim{Key: l.StorageKey(), Token: ent.Token, Fingerprint: ent.Fingerprint, Lease: p.Lease, Retention: p.Retention}
}

func requireProblem(t *testing.T, a answer, status int, slug string) {
	t.Helper()
	require.Equal(t, status, a.status, a.raw)
	require.Equal(t, "application/problem+json", a.header.Get("Content-Type"))
	require.Equal(t, idempotency.ProblemTypeBase+slug, a.str("type"), a.raw)
	require.EqualValues(t, status, a.get("status"))
	require.NotEmpty(t, a.str("title"))
}

// counter reads one series of a counter vector from the registry.
func (f *fixture) counter(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := f.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// requireNoSecrets: the raw key, the caller's credential and the admin
// token never reach the log.
func (f *fixture) requireNoSecrets(t *testing.T) {
	t.Helper()
	logs := f.logs.String()
	for _, secret := range []string{rawKey, "client-credential-abc", testToken} {
		require.NotContains(t, logs, secret)
	}
}

// faultyStore fails Get or Delete, or reports one key's entry corrupt
// until it is deleted.
type faultyStore struct {
	idempotency.Store
	mu         sync.Mutex
	getErr     error
	deleteErr  error
	corruptKey string
	deleted    []string
}

func (s *faultyStore) Get(ctx context.Context, key string) (*idempotency.Entry, error) {
	s.mu.Lock()
	getErr, corrupt := s.getErr, s.corruptKey == key
	s.mu.Unlock()
	switch {
	case getErr != nil:
		return nil, getErr
	case corrupt:
		return nil, errors.Join(errors.New("faulty: record: unexpected end of data"), idempotency.ErrCorruptRecord)
	}
	return s.Store.Get(ctx, key)
}

func (s *faultyStore) Delete(ctx context.Context, key string, seen *idempotency.Entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.deleteErr != nil {
		return s.deleteErr
	}
	s.deleted = append(s.deleted, key)
	if s.corruptKey == key {
		s.corruptKey = ""
	}
	return s.Store.Delete(ctx, key, seen)
}
