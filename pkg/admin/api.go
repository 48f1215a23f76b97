// Package admin is the operator API served on the admin listener: inspect
// a key (state, mark, status, expiry; the body only when asked) and purge
// it, given the inputs the client sent (raw key, policy, scope headers,
// principal). The server derives the storage key with the engine's own
// functions (idempotency.RequestKey), so raw keys and credentials are never
// stored or logged; answers and logs name a key by its id.
//
// The API is off unless bearer tokens are configured (Tokens). Every purge
// and inspection is written to the audit log whatever the log level. See
// docs/admin.md.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// Routes. They are RPC-style POSTs under a versioned prefix because their
// input is the client's raw key and credentials: a URL (REST's
// GET /keys/{key}) would put those in access logs and proxy caches, and a
// DELETE with a body has no defined meaning. /admin/v1 lets a later
// version change the shapes without breaking scripts.
const (
	Prefix        = "/admin/"
	RouteInspect  = "/admin/v1/keys/inspect"
	RoutePurge    = "/admin/v1/keys/purge"
	RoutePolicies = "/admin/v1/policies"
)

// DefaultStoreTimeout bounds each store call of the API.
const DefaultStoreTimeout = 5 * time.Second

// Options configure the API.
type Options struct {
	// Store is the store the engine uses.
	Store idempotency.Store
	// Default and Policies are the server's policies, as the ext_proc
	// server selects them by name.
	Default  *idempotency.Policy
	Policies map[string]*idempotency.Policy
	// Tokens are the accepted bearer tokens; nil turns the API off (every
	// route answers 404 admin-api-off).
	Tokens *Tokens
	// Logger receives operational messages; the audit records go to the
	// same handler at every log level.
	Logger *slog.Logger
	// Registerer receives the API's metrics (required).
	Registerer prometheus.Registerer
	// StoreTimeout bounds each store call (DefaultStoreTimeout when zero).
	StoreTimeout time.Duration
}

// API is the admin HTTP API; mount it at Prefix.
type API struct {
	o        Options
	log      *slog.Logger
	audit    *slog.Logger
	maxBody  int64
	table    map[string]route
	requests *prometheus.CounterVec
	purges   *prometheus.CounterVec
}

// New builds the API and registers its metrics.
func New(o Options) (*API, error) {
	if o.Store == nil || o.Default == nil || o.Registerer == nil {
		return nil, errors.New("admin: Store, Default and Registerer are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.StoreTimeout <= 0 {
		o.StoreTimeout = DefaultStoreTimeout
	}
	a := &API{o: o, log: o.Logger, audit: slog.New(auditHandler{o.Logger.Handler()})}
	// Room for a derived key's request body, base64-encoded, and the rest.
	body := o.Default.MaxRequestBody
	for _, p := range o.Policies {
		body = max(body, p.MaxRequestBody)
	}
	a.maxBody = body*4/3 + 64<<10
	a.table = a.routes()
	a.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gopotency_admin_requests_total",
		Help: "Admin API requests by route (inspect, purge, policies, other) and HTTP status; 401s count refused credentials."}, []string{"op", "code"})
	a.purges = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gopotency_admin_purges_total",
		Help: "Keys purged through the admin API, by the state they were in (in_flight, lease_expired, completed, corrupt) and the mark of a completed record."}, []string{"state", "mark"})
	for _, c := range []prometheus.Collector{a.requests, a.purges} {
		if err := o.Registerer.Register(c); err != nil {
			return nil, fmt.Errorf("admin: metrics: %w", err)
		}
	}
	return a, nil
}

// Enabled reports whether the API is on.
func (a *API) Enabled() bool { return a.o.Tokens != nil }

// Tokens returns the accepted tokens (nil when the API is off).
func (a *API) Tokens() *Tokens { return a.o.Tokens }

// call is one admin request being served.
type call struct {
	w      http.ResponseWriter
	r      *http.Request
	op     string
	who    string // token id
	query  url.Values
	status int
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := &call{w: w, r: r, op: "other"}
	defer func() { a.requests.WithLabelValues(c.op, strconv.Itoa(c.status)).Inc() }()
	if !a.Enabled() {
		a.fail(c, errOff)
		return
	}
	who, err := a.o.Tokens.authenticate(r)
	if err != nil {
		if !errors.Is(err, errTokenFile) {
			a.log.Warn("admin API: request refused", "reason", err, "remote", r.RemoteAddr, "path", r.URL.Path)
		}
		a.fail(c, err)
		return
	}
	c.who = who
	rt, ok := a.table[r.URL.Path]
	if !ok {
		a.fail(c, errNoRoute)
		return
	}
	c.op = rt.op
	if r.Method != rt.method {
		c.w.Header().Set("Allow", rt.method)
		a.fail(c, fmt.Errorf("%w: %s; use %s", errMethod, r.Method, rt.method))
		return
	}
	if c.query, err = url.ParseQuery(r.URL.RawQuery); err != nil {
		a.fail(c, fmt.Errorf("%w: query: %w", errBadRequest, err))
		return
	}
	for name := range c.query {
		if !slices.Contains(rt.query, name) {
			a.fail(c, fmt.Errorf("%w: unknown query parameter %q", errBadRequest, name))
			return
		}
	}
	rt.serve(c)
}

// route is one admin route: its method, its handler and the query
// parameters it takes.
type route struct {
	op     string // metrics label
	method string
	serve  func(*call)
	query  []string
}

func (a *API) routes() map[string]route {
	return map[string]route{
		RouteInspect:  {"inspect", http.MethodPost, a.inspect, []string{"include_body"}},
		RoutePurge:    {"purge", http.MethodPost, a.purge, []string{"force"}},
		RoutePolicies: {"policies", http.MethodGet, a.policies, nil},
	}
}

// flag reads a boolean query parameter (absent is false).
func (c *call) flag(name string) (bool, error) {
	vals, ok := c.query[name]
	if !ok {
		return false, nil
	}
	b, err := strconv.ParseBool(vals[len(vals)-1])
	if err != nil || len(vals) > 1 {
		return false, fmt.Errorf("%w: %s: give it once, as true or false", errBadRequest, name)
	}
	return b, nil
}

// readLookup decodes the body and resolves the key it names.
func (a *API) readLookup(c *call) (*keyRequest, *lookup, error) {
	body := http.MaxBytesReader(c.w, c.r.Body, a.maxBody)
	kr, err := decodeKeyRequest(body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			err = fmt.Errorf("%w: body over %d bytes", errBadRequest, a.maxBody)
		}
		return nil, nil, err
	}
	l, err := a.resolve(kr)
	return kr, l, err
}

func (a *API) storeCtx(c *call) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.r.Context(), a.o.StoreTimeout)
}

// get reads the entry: corrupt is set (and err nil) for an entry the
// store cannot decode.
func (a *API) get(c *call, l *lookup) (ent *idempotency.Entry, corrupt, err error) {
	ctx, cancel := a.storeCtx(c)
	defer cancel()
	ent, err = a.o.Store.Get(ctx, l.key)
	if errors.Is(err, idempotency.ErrCorruptRecord) {
		return nil, err, nil
	}
	return ent, nil, err
}

// readKeyCall reads the boolean option opt and the body of an inspect or
// purge, answering the problem itself when they are not valid.
func (a *API) readKeyCall(c *call, opt string) (on bool, kr *keyRequest, l *lookup, ok bool) {
	on, err := c.flag(opt)
	if err == nil {
		kr, l, err = a.readLookup(c)
	}
	if err != nil {
		a.fail(c, err)
		return false, nil, nil, false
	}
	return on, kr, l, true
}

func (a *API) inspect(c *call) {
	withBody, kr, l, ok := a.readKeyCall(c, "include_body")
	if !ok {
		return
	}
	ent, corrupt, err := a.get(c, l)
	state := ""
	switch {
	case err == nil && corrupt != nil:
		state = stateCorrupt
	case err == nil:
		state = ent.State.String()
	case errors.Is(err, idempotency.ErrNotFound):
		state = "absent"
	}
	attrs := []slog.Attr{slog.String("audit", "inspect"), slog.String("who", c.who), slog.String("remote", c.r.RemoteAddr),
		slog.String("key_id", l.keyID), slog.String("policy", l.policyName), slog.String("state", state), slog.Bool("include_body", withBody)}
	if kr.Reason != "" {
		attrs = append(attrs, slog.String("reason", kr.Reason))
	}
	a.audit.LogAttrs(c.r.Context(), slog.LevelInfo, "admin: key inspected", attrs...)
	if err != nil {
		a.failKey(c, l, err)
		return
	}
	a.reply(c, http.StatusOK, view(l, ent, corrupt, withBody))
}

// purgeAnswer is what purge returns.
type purgeAnswer struct {
	Purged   bool       `json:"purged"`
	KeyID    string     `json:"key_id"`
	Forced   bool       `json:"forced,omitempty"`
	Warning  string     `json:"warning,omitempty"`
	Previous *entryView `json:"previous"`
	Next     string     `json:"next"`
}

const forcedWarning = "The request holding this key may still be running. Its next lease renewal re-creates the claim; a retry arriving before that runs the operation a second time, and whichever finishes second cannot record its response."

// purgeRounds bounds the inspections of one purge. Another round runs only
// when the key changed between a round's Get and its Delete.
const purgeRounds = 5

func (a *API) purge(c *call) {
	force, kr, l, ok := a.readKeyCall(c, "force")
	if !ok {
		return
	}
	for range purgeRounds {
		if a.purgeRound(c, kr, l, force) {
			return
		}
	}
	err := fmt.Errorf("admin: purge: %w: the key changed under %d inspections in a row", idempotency.ErrStoreUnavailable, purgeRounds)
	a.auditPurge(c, kr, l, nil, "failed", force, err)
	a.failKey(c, l, err)
}

// purgeRound inspects the key and deletes exactly the entry inspected, so
// what is refused, deleted and reported is what the store held at that
// moment. It answers and reports true, or reports false, answering
// nothing, when the entry changed in between (the claim completed or was
// renewed, a new claim came): the purge then looks again.
func (a *API) purgeRound(c *call, kr *keyRequest, l *lookup, force bool) bool {
	ent, corrupt, err := a.get(c, l)
	if err != nil {
		if errors.Is(err, idempotency.ErrNotFound) {
			a.auditPurge(c, kr, l, nil, "absent", force, nil)
		} else {
			a.auditPurge(c, kr, l, nil, "failed", force, err)
		}
		a.failKey(c, l, err)
		return true
	}
	prev := view(l, ent, corrupt, false)
	live := corrupt == nil && ent.State == idempotency.InFlight
	if live && !force {
		a.auditPurge(c, kr, l, prev, "refused", force, nil)
		p := problemFor(errPurgeLive)
		p.KeyID, p.State, p.LeaseExpiresAt, p.Inputs = l.keyID, prev.State, prev.LeaseExpiresAt, &l.inputs
		a.writeProblem(c, p)
		return true
	}
	ctx, cancel := a.storeCtx(c)
	defer cancel()
	// ent is nil for a corrupt entry, which cannot be described: it is
	// deleted as found (only its retention running out could put another
	// entry there in between).
	if err := a.o.Store.Delete(ctx, l.key, ent); err != nil {
		if ent != nil && errors.Is(err, idempotency.ErrNotFound) {
			return false
		}
		a.auditPurge(c, kr, l, prev, "failed", force, err)
		a.failKey(c, l, err)
		return true
	}
	a.purges.WithLabelValues(prev.State, prev.markLabel()).Inc()
	a.auditPurge(c, kr, l, prev, "purged", force, nil)
	ans := &purgeAnswer{Purged: true, KeyID: l.keyID, Forced: live, Previous: prev,
		Next: "The next request with this key runs upstream (a new claim); other instances with a replay cache may replay the old answer for up to replay_cache.ttl."}
	if live {
		ans.Warning = forcedWarning
	}
	a.reply(c, http.StatusOK, ans)
	return true
}

// auditPurge writes the audit record of a purge attempt: who (token id),
// which key (id only), what it was, and what happened.
func (a *API) auditPurge(c *call, kr *keyRequest, l *lookup, prev *entryView, result string, force bool, err error) {
	attrs := []slog.Attr{slog.String("audit", "purge"), slog.String("result", result), slog.String("who", c.who),
		slog.String("remote", c.r.RemoteAddr), slog.String("key_id", l.keyID), slog.String("policy", l.policyName), slog.Bool("force", force)}
	if prev != nil {
		attrs = append(attrs, slog.String("previous_state", prev.State), slog.String("mark", prev.markLabel()), slog.Int("status", prev.Status))
	}
	if kr.Reason != "" {
		attrs = append(attrs, slog.String("reason", kr.Reason))
	}
	lvl := slog.LevelInfo
	if err != nil {
		attrs = append(attrs, slog.Any("error", err))
		lvl = slog.LevelError
	}
	if prev != nil && prev.State == idempotency.InFlight.String() && result == "purged" {
		lvl = slog.LevelWarn // a live claim: the operation may run twice
	}
	a.audit.LogAttrs(c.r.Context(), lvl, "admin: purge", attrs...)
}

// policyView describes a policy's key inputs, so an operator knows what
// inspect and purge need.
type policyView struct {
	Name           string       `json:"name"`
	KeyHeader      string       `json:"key_header"`
	ScopeHeaders   []string     `json:"scope_headers"`
	ScopePrincipal bool         `json:"scope_principal"`
	AutoKey        *autoKeyView `json:"auto_key,omitempty"`
	Retention      string       `json:"retention"`
	Lease          string       `json:"lease"`
	UnknownOutcome string       `json:"unknown_outcome"`
}

type autoKeyView struct {
	Headers       []string `json:"headers,omitempty"`
	Body          bool     `json:"body,omitempty"`
	JSONFields    []string `json:"json_fields,omitempty"`
	SourceAddress bool     `json:"source_address,omitempty"`
}

func newPolicyView(name string, p *idempotency.Policy) policyView {
	v := policyView{Name: name, KeyHeader: p.KeyHeader, ScopeHeaders: append([]string{}, p.ScopeHeaders...), ScopePrincipal: p.ScopePrincipal,
		Retention: p.Retention.String(), Lease: p.Lease.String(), UnknownOutcome: string(p.UnknownOutcome)}
	if ak := p.AutoKey; ak != nil {
		v.AutoKey = &autoKeyView{Headers: ak.Headers, Body: ak.Body, JSONFields: ak.JSONFields, SourceAddress: ak.SourceAddress}
	}
	return v
}

func (a *API) policies(c *call) {
	out := struct {
		Policies []policyView `json:"policies"`
	}{Policies: []policyView{newPolicyView(policyName, a.o.Default)}}
	for _, name := range slices.Sorted(maps.Keys(a.o.Policies)) {
		out.Policies = append(out.Policies, newPolicyView(name, a.o.Policies[name]))
	}
	a.reply(c, http.StatusOK, out)
}

func (a *API) reply(c *call, status int, v any) {
	c.status = status
	c.w.Header().Set("Content-Type", "application/json")
	c.w.Header().Set("Cache-Control", "no-store")
	c.w.WriteHeader(status)
	enc := json.NewEncoder(c.w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// fail answers err as a problem.
func (a *API) fail(c *call, err error) {
	p := problemFor(err)
	if p.Status == http.StatusUnauthorized {
		v := `Bearer realm="gopotency-admin"`
		if errors.Is(err, errWrongToken) {
			v += `, error="invalid_token"`
		}
		p.headers = http.Header{"Www-Authenticate": {v}}
	}
	if p.Status >= 500 && !errors.Is(err, errTokenFile) {
		a.log.Error("admin API: request failed", "op", c.op, "error", err)
	}
	a.writeProblem(c, p)
}

// failKey answers a problem about a resolved key, naming it.
func (a *API) failKey(c *call, l *lookup, err error) {
	p := problemFor(err)
	p.KeyID, p.Inputs = l.keyID, &l.inputs
	if p.Status >= 500 {
		a.log.Error("admin API: store call failed", "op", c.op, "key_id", l.keyID, "error", err)
	}
	a.writeProblem(c, p)
}

func (a *API) writeProblem(c *call, p *problem) {
	c.status = p.Status
	p.write(c.w)
}

// auditHandler writes every record its handler gets, whatever the
// configured level: an audit trail that log.level: warn would drop is
// none.
type auditHandler struct{ slog.Handler }

func (auditHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h auditHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return auditHandler{h.Handler.WithAttrs(as)}
}
func (h auditHandler) WithGroup(name string) slog.Handler {
	return auditHandler{h.Handler.WithGroup(name)}
}
