package idempotency

import (
	"net/http"
	"slices"
	"strings"
)

// ReplayedHeader marks a replayed response (the de facto name, after
// Stripe; the IETF draft defines none).
const ReplayedHeader = "Idempotent-Replayed"

// hopByHop headers describe one connection, never a stored response.
// Content-Length is recomputed by whoever sends the replay.
var hopByHop = []string{"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "content-length", strings.ToLower(ReplayedHeader)}

// replayableHeaders filters a response's headers down to those stored for
// replay under p: no pseudo or hop-by-hop headers, nothing the Connection
// header names, nothing on the denylist, and only the allowlist when one
// is set. Order and repeated fields are kept.
func replayableHeaders(p *Policy, hs []Header) []Header {
	var connNamed []string
	for _, h := range hs {
		if strings.EqualFold(h.Name, "connection") {
			for _, n := range strings.Split(h.Value, ",") {
				connNamed = append(connNamed, strings.ToLower(strings.TrimSpace(n)))
			}
		}
	}
	out := make([]Header, 0, len(hs))
	for _, h := range hs {
		n := strings.ToLower(h.Name)
		switch {
		case strings.HasPrefix(n, ":"), slices.Contains(hopByHop, n), slices.Contains(connNamed, n):
		case len(p.ReplayAllowlist) > 0 && !containsFold(p.ReplayAllowlist, n):
		case containsFold(p.ReplayDenylist, n):
		default:
			out = append(out, Header{Name: http.CanonicalHeaderKey(n), Value: h.Value})
		}
	}
	return out
}

func containsFold(list []string, s string) bool {
	return slices.ContainsFunc(list, func(x string) bool { return strings.EqualFold(x, s) })
}
