package redisstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// NewFromURL connects to the Redis that rawURL names, checks it with Ping,
// and returns a Store that owns the client (Close closes it). Forms:
//
//	redis://[user:password@]host[:port][/db][?option=value&...]   one server
//	rediss://...                                                   the same over TLS
//	unix://[user:password@]/path/to/redis.sock[?db=N]
//	redis+cluster://[user:password@]host:port,host:port[/][?...]   Cluster seed nodes
//	redis+sentinel://[user:password@]host:port,host:port/master[/db][?...]
//
// rediss+cluster and rediss+sentinel use TLS. Cluster credentials may also
// be given as ?username=...&password=... . In a Sentinel URL the userinfo
// authenticates to the sentinels and ?username=/?password= to the master,
// as in go-redis. Ports default to 6379 (26379 for sentinels).
//
// Options are go-redis option names in snake case (dial_timeout=2s,
// pool_size=50, ...), plus three the store consumes: prefix=<key prefix>,
// restart_grace=<duration> (DefaultRestartGrace; see Watch; 0 turns the
// refusal of new claims after a restart off, for servers whose persistence
// and replication make lost claims impossible) and replicas=<n> (see
// Options.Replicas; 1 by default for redis+sentinel://, else 0).
// context_timeout_enabled defaults to true so a ctx deadline bounds every
// call. Errors never echo the URL, which may hold a password; a reachable
// but failing server gives an error wrapping idempotency.ErrStoreUnavailable.
//
// o supplies the Logger (o.Client must be nil; o.Prefix and o.Watch are
// taken from the URL). At start the server's memory settings are checked:
// an eviction policy that may drop keys is logged at warn level (an evicted
// claim is a duplicate execution).
func NewFromURL(ctx context.Context, rawURL string, o Options) (*Store, error) {
	if o.Client != nil {
		return nil, errors.New("redisstore: NewFromURL makes its own client; use New for yours")
	}
	opts, ex, err := parseURLExtras(rawURL)
	if err != nil {
		return nil, err
	}
	w := NewWatch(cmp.Or(o.RestartGrace, DefaultRestartGrace))
	if ex.grace != nil {
		w = NewWatch(*ex.grace)
	}
	var client redis.UniversalClient
	switch co := opts.(type) {
	case *redis.ClusterOptions:
		co.NewClient = func(no *redis.Options) *redis.Client {
			no.OnConnect = w.NodeHook(no.Addr)
			return redis.NewClient(no)
		}
		client = redis.NewClusterClient(co)
	case *redis.FailoverOptions:
		co.OnConnect = w.OnConnect
		client = redis.NewFailoverClient(co)
	case *redis.Options:
		co.OnConnect = w.OnConnect
		client = redis.NewClient(co)
	}
	o.Client, o.Prefix, o.Watch, o.Replicas = client, ex.prefix, w, ex.replicas
	s, err := New(o)
	if err != nil {
		_ = client.Close()
		return nil, err
	}
	s.owned = true
	if err := s.Ping(ctx); err != nil {
		_ = client.Close()
		return nil, err
	}
	for _, warning := range s.CheckSettings(ctx) { // meets every master of a Cluster
		s.logger.WarnContext(ctx, "redisstore: "+warning)
	}
	s.checkDurability(ctx)
	if d, ok := s.Durability(); ok {
		s.logger.InfoContext(ctx, "redisstore: durability: "+d)
	} else {
		s.logger.WarnContext(ctx, "redisstore: durability: "+d)
	}
	w.NodesKnown()
	return s, nil
}

// urlExtras are the URL options the store consumes itself.
type urlExtras struct {
	prefix   string
	grace    *time.Duration
	replicas int // -1 until set: the default depends on the topology
}

// parseURLExtras is parseURL plus restart_grace and replicas.
func parseURLExtras(rawURL string) (any, urlExtras, error) {
	ex := urlExtras{replicas: -1}
	if base, query, ok := strings.Cut(rawURL, "?"); ok {
		q, err := url.ParseQuery(query)
		if err != nil {
			return nil, ex, fmt.Errorf("redisstore: bad Redis URL: %w", err)
		}
		if q.Has("restart_grace") {
			d, err := time.ParseDuration(q.Get("restart_grace"))
			if err != nil || d < 0 {
				return nil, ex, fmt.Errorf("redisstore: bad Redis URL: restart_grace %q is not a duration like 11s", q.Get("restart_grace"))
			}
			ex.grace = &d
		}
		if q.Has("replicas") {
			n, err := strconv.Atoi(q.Get("replicas"))
			if err != nil || n < 0 {
				return nil, ex, fmt.Errorf("redisstore: bad Redis URL: replicas %q is not a whole number of replicas like 1", q.Get("replicas"))
			}
			ex.replicas = n
		}
		q.Del("restart_grace")
		q.Del("replicas")
		rawURL = base
		if len(q) > 0 {
			rawURL += "?" + q.Encode()
		}
	}
	opts, prefix, err := parseURL(rawURL)
	ex.prefix = prefix
	if _, sentinel := opts.(*redis.FailoverOptions); ex.replicas < 0 && sentinel {
		// Sentinel exists to fail over: confirm claims on a replica unless
		// told otherwise.
		ex.replicas = 1
	}
	ex.replicas = max(ex.replicas, 0)
	return opts, ex, err
}

// parseURL turns rawURL into *redis.Options, *redis.ClusterOptions or
// *redis.FailoverOptions, and the key prefix.
func parseURL(rawURL string) (opts any, prefix string, err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("redisstore: bad Redis URL: %w", err)
		}
	}()
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return nil, "", errors.New(`no scheme; want redis://, rediss://, unix://, redis+cluster:// or redis+sentinel://`)
	}
	base, topo, _ := strings.Cut(strings.ToLower(scheme), "+")
	if (base != "redis" && base != "rediss" && base != "unix") || (base == "unix" && topo != "") {
		return nil, "", fmt.Errorf("unsupported scheme %q; want redis, rediss, unix, redis+cluster or redis+sentinel", scheme)
	}
	// Host lists are not valid URL hosts: set the authority aside and let
	// net/url parse userinfo, path and query.
	authority, tail := rest, ""
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority, tail = rest[:i], rest[i:]
	}
	userinfo := ""
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		userinfo, authority = authority[:i+1], authority[i+1:]
	}
	u, err := url.Parse(base + "://" + userinfo + "placeholder" + tail)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error quotes the whole URL, password included
		}
		return nil, "", err
	}
	if u.Fragment != "" {
		return nil, "", errors.New("unexpected #fragment")
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, "", err
	}
	prefix = q.Get("prefix")
	q.Del("prefix")
	if strings.ContainsAny(prefix, "{}") {
		return nil, "", errors.New("prefix must not contain braces")
	}
	// Not every go-redis URL parser reads this option; it defaults to on
	// here so a ctx deadline bounds each call.
	ctxTimeout := true
	if q.Has("context_timeout_enabled") {
		if ctxTimeout, err = strconv.ParseBool(q.Get("context_timeout_enabled")); err != nil {
			return nil, "", fmt.Errorf("context_timeout_enabled: %w", err)
		}
		q.Del("context_timeout_enabled")
	}
	switch topo {
	case "":
		if strings.Contains(authority, ",") {
			return nil, "", errors.New("several hosts need redis+cluster:// or redis+sentinel://")
		}
		u.Host, u.RawQuery = authority, q.Encode()
		o, err := redis.ParseURL(u.String())
		if err != nil {
			return nil, "", err
		}
		o.ContextTimeoutEnabled = ctxTimeout
		return o, prefix, nil
	case "cluster":
		o, err := clusterOptions(base, u, q, authority)
		if err != nil {
			return nil, "", err
		}
		o.ContextTimeoutEnabled = ctxTimeout
		return o, prefix, nil
	case "sentinel":
		o, err := failoverOptions(base, u, q, authority)
		if err != nil {
			return nil, "", err
		}
		o.ContextTimeoutEnabled = ctxTimeout
		return o, prefix, nil
	}
	return nil, "", fmt.Errorf("unsupported scheme %q; want redis, rediss, unix, redis+cluster or redis+sentinel", scheme)
}

func clusterOptions(base string, u *url.URL, q url.Values, authority string) (*redis.ClusterOptions, error) {
	hosts, err := splitHosts(authority, "6379")
	if err != nil {
		return nil, err
	}
	if u.Path != "" && u.Path != "/" {
		return nil, errors.New("a Redis Cluster has no databases; drop the path")
	}
	if q.Has("addr") {
		return nil, errors.New("list Cluster nodes in the host part, comma separated, not as addr=")
	}
	user := u.User
	if q.Has("username") || q.Has("password") {
		if user != nil {
			return nil, errors.New("credentials given both before @ and as query options")
		}
		user = url.UserPassword(q.Get("username"), q.Get("password"))
		q.Del("username")
		q.Del("password")
	}
	for _, h := range hosts[1:] {
		q.Add("addr", h)
	}
	cu := url.URL{Scheme: base, User: user, Host: hosts[0], RawQuery: q.Encode()}
	return redis.ParseClusterURL(cu.String())
}

func failoverOptions(base string, u *url.URL, q url.Values, authority string) (*redis.FailoverOptions, error) {
	hosts, err := splitHosts(authority, "26379")
	if err != nil {
		return nil, err
	}
	segs := strings.FieldsFunc(u.Path, func(r rune) bool { return r == '/' })
	if len(segs) == 0 || len(segs) > 2 {
		return nil, errors.New("a Sentinel URL needs the master name as its path: redis+sentinel://host:26379,host:26379/mymaster[/db]")
	}
	if q.Has("master_name") || q.Has("addr") {
		return nil, errors.New("give the master name as the path and the sentinels in the host part, not as query options")
	}
	q.Set("master_name", segs[0])
	for _, h := range hosts[1:] {
		q.Add("addr", h)
	}
	fu := url.URL{Scheme: base, User: u.User, Host: hosts[0], RawQuery: q.Encode()}
	if len(segs) == 2 {
		fu.Path = "/" + segs[1]
	}
	return redis.ParseFailoverURL(fu.String())
}

// splitHosts validates a comma-separated host[:port] list and fills in the
// default port.
func splitHosts(authority, defPort string) ([]string, error) {
	if authority == "" {
		return nil, errors.New("no hosts")
	}
	parts := strings.Split(authority, ",")
	out := make([]string, 0, len(parts))
	for _, p := range parts {
		host, port := p, defPort
		bracketed := strings.HasPrefix(p, "[") && strings.HasSuffix(p, "]")
		if !bracketed && strings.Contains(p, ":") {
			var err error
			if host, port, err = net.SplitHostPort(p); err != nil {
				return nil, fmt.Errorf("host %q: %w", p, err)
			}
		}
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		if host == "" {
			return nil, fmt.Errorf("empty host in %q", authority)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("host %q: bad port %q", p, port)
		}
		out = append(out, net.JoinHostPort(host, port))
	}
	return out, nil
}
