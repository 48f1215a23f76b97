package main

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"gopkg.in/yaml.v3"

	"github.com/gopotency/gopotency/pkg/config"
	"github.com/gopotency/gopotency/pkg/envoyconfig"
)

const (
	extProcFilter = "envoy.filters.http.ext_proc"
	// bufferFilter holds body-first requests' headers for ext_proc; the
	// baseline has no use for it either.
	bufferFilter = "envoy.filters.http.buffer"
)

// envoyConfig generates a target's Envoy configuration the way the
// shipped envoy/envoy.yaml is generated, from the shipped gopotency.yaml,
// with loopback addresses: Envoy on listen and admin, the ext_proc
// cluster on extProc, the app cluster on app. baseline drops the filter.
func envoyConfig(base *config.Config, listen, admin int, extProc, app string, bodyFirst, baseline bool) ([]byte, error) {
	c := *base
	e, err := base.RequireEnvoy()
	if err != nil {
		return nil, err
	}
	ec := *e
	ec.Listen, ec.Admin = fmt.Sprintf("127.0.0.1:%d", listen), fmt.Sprintf("127.0.0.1:%d", admin)
	ec.ExtProcAddress, ec.BodyFirst = extProc, bodyFirst
	if baseline {
		// The same prefixes, clusters and timeouts, one route each, with
		// none of the matchers GoPotency adds; the filter goes below.
		ec.ExtProcAddress = "127.0.0.1:9"
		ec.Routes = slices.Clone(e.Routes)
		for i := range ec.Routes {
			ec.Routes[i].Disabled, ec.Routes[i].Policy = true, ""
		}
	}
	ec.Clusters = slices.Clone(e.Clusters)
	for i := range ec.Clusters {
		ec.Clusters[i].Address = app
	}
	c.Envoy = &ec
	out, err := envoyconfig.Generate(&c, "gopotency-bench")
	if err != nil || !baseline {
		return out, err
	}
	return stripExtProc(out)
}

// stripExtProc turns a generated Envoy config into the baseline: the same
// listener, routes and app cluster, without the ext_proc filter, its
// per-route settings and the gopotency cluster. It fails when any of them
// is missing, so an edit of envoy.yaml cannot silently turn the baseline
// into something else.
func stripExtProc(cfg []byte) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(cfg, &doc); err != nil {
		return nil, fmt.Errorf("parse envoy config: %w", err)
	}
	var filters, clusters int
	walk(&doc, func(n *yaml.Node) {
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			switch {
			case k.Value == "http_filters" && v.Kind == yaml.SequenceNode:
				filters += dropNamed(v, extProcFilter)
				dropNamed(v, bufferFilter)
			case k.Value == "clusters" && v.Kind == yaml.SequenceNode:
				clusters += dropNamed(v, "gopotency")
			case k.Value == "typed_per_filter_config" && v.Kind == yaml.MappingNode:
				dropKey(v, extProcFilter)
				dropKey(v, bufferFilter)
			}
		}
		// A route left with an empty typed_per_filter_config loses it.
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k, v := n.Content[i], n.Content[i+1]; k.Value == "typed_per_filter_config" && v.Kind == yaml.MappingNode && len(v.Content) == 0 {
				n.Content = slices.Delete(n.Content, i, i+2)
				i -= 2
			}
		}
	})
	var errs []error
	if filters != 1 {
		errs = append(errs, fmt.Errorf("expected 1 %s entry in http_filters, found %d", extProcFilter, filters))
	}
	if clusters != 1 {
		errs = append(errs, fmt.Errorf("expected 1 cluster named gopotency, found %d", clusters))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("baseline envoy config: %w", err)
	}
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("encode envoy config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode envoy config: %w", err)
	}
	return out.Bytes(), nil
}

// walk calls fn on every mapping node, parents before children.
func walk(n *yaml.Node, fn func(*yaml.Node)) {
	if n.Kind == yaml.MappingNode {
		fn(n)
	}
	for _, c := range n.Content {
		walk(c, fn)
	}
}

// dropNamed removes the items of seq that are mappings with name: name and
// returns how many it removed.
func dropNamed(seq *yaml.Node, name string) int {
	before := len(seq.Content)
	seq.Content = slices.DeleteFunc(seq.Content, func(item *yaml.Node) bool {
		if item.Kind != yaml.MappingNode {
			return false
		}
		for i := 0; i+1 < len(item.Content); i += 2 {
			if item.Content[i].Value == "name" && item.Content[i+1].Value == name {
				return true
			}
		}
		return false
	})
	return before - len(seq.Content)
}

// dropKey removes key from the mapping m and reports whether it was there.
func dropKey(m *yaml.Node, key string) bool {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content = slices.Delete(m.Content, i, i+2)
			return true
		}
	}
	return false
}
