package envoyconfig

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/gopotency/gopotency/pkg/config"
	"github.com/gopotency/gopotency/pkg/idempotency"
)

// errSnippetBodyFirst says why a snippet stays headers first.
var errSnippetBodyFirst = errors.New("envoy.body_first: not in a snippet. Body-first needs each route split into three Envoy routes " +
	"(keyed with a Content-Length within the cap, keyed, the rest), and a snippet adds to your routes without rewriting them. " +
	"Set body_first: false (guarded requests go headers first), or generate the whole bootstrap (--target envoy)")

// Snippet renders what a user adds to an Envoy configuration of their
// own: the listener's buffer limit, the ext_proc filter (off by default),
// the gopotency cluster, and for each route of the envoy section the
// typed_per_filter_config that turns the filter on there with its policy.
// The routes are the user's: envoy.routes names them (name, or the
// prefix a name is derived from) and says their policy; clusters and
// timeouts stay the user's. command is written at the top.
func (p *Plan) Snippet(command string) ([]byte, error) {
	var errs []error
	if p.bodyFirstAsked {
		errs = append(errs, errSnippetBodyFirst)
	}
	if len(p.Clusters) > 0 {
		errs = append(errs, errors.New("envoy.clusters: your routes go to your own clusters; leave clusters out of a snippet"))
	}
	if len(p.Routes) == 0 {
		errs = append(errs, errors.New("envoy.routes: name at least one of your routes for GoPotency to guard ({name: <your route's name>, policy: …})"))
	}
	for i, r := range p.Routes {
		if r.Cluster != "" || r.Timeout != 0 {
			errs = append(errs, fmt.Errorf("envoy.routes[%d] (%s): cluster and timeout are your route's own; leave them out of a snippet", i, r.Name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	// The filter skips what none of the guarded routes' policies can need
	// (it cannot tell the routes apart): a route naming no policy may get
	// any that route_policies select.
	var pols []*idempotency.Policy
	byName := false
	for _, r := range p.Routes {
		if r.policy != nil {
			pols = append(pols, r.policy)
			byName = byName || r.Policy == ""
		}
	}
	if byName {
		pols = append(pols, p.byRouteName()...)
	}
	var b bytes.Buffer
	if err := templates.ExecuteTemplate(&b, "snippet.yaml.tmpl", struct {
		*Plan
		Command, GoPotency, Filter, PerType string
		Skip                                FilterSkip
	}{p, command, config.GoPotencyCluster, "envoy.filters.http.ext_proc",
		"type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute", filterSkip(pols)}); err != nil {
		return nil, fmt.Errorf("envoy-snippet: %w", err)
	}
	return b.Bytes(), nil
}
