package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/gopotency/gopotency/internal/envoyrun"
)

func TestStripExtProcOnShippedConfig(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "envoy", "envoy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := envoyrun.Rewrite(raw, envoyrun.Addrs{Listen: 10000, Admin: 9901, GoPotency: "127.0.0.1:9002", App: "127.0.0.1:8080"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := stripExtProc(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if l := strings.TrimSpace(line); !strings.HasPrefix(l, "#") && (strings.Contains(l, "ext_proc") || strings.Contains(l, "gopotency")) {
			t.Fatalf("baseline still configures ext_proc or gopotency: %q\n%s", l, out)
		}
	}
	var doc struct {
		StaticResources struct {
			Listeners []struct {
				FilterChains []struct {
					Filters []struct {
						TypedConfig struct {
							HTTPFilters []struct{ Name string } `yaml:"http_filters"`
							RouteConfig struct {
								VirtualHosts []struct {
									Routes []map[string]any
								} `yaml:"virtual_hosts"`
							} `yaml:"route_config"`
						} `yaml:"typed_config"`
					}
				} `yaml:"filter_chains"`
			}
			Clusters []struct{ Name string }
		} `yaml:"static_resources"`
	}
	if err := yaml.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	hcm := doc.StaticResources.Listeners[0].FilterChains[0].Filters[0].TypedConfig
	if len(hcm.HTTPFilters) != 1 || hcm.HTTPFilters[0].Name != "envoy.filters.http.router" {
		t.Fatalf("http_filters = %+v, want the router alone", hcm.HTTPFilters)
	}
	routes := hcm.RouteConfig.VirtualHosts[0].Routes
	if len(routes) != 3 {
		t.Fatalf("want the 3 routes kept, got %d", len(routes))
	}
	for _, r := range routes {
		if _, ok := r["typed_per_filter_config"]; ok {
			t.Fatalf("route kept an empty typed_per_filter_config: %v", r)
		}
		if _, ok := r["route"]; !ok {
			t.Fatalf("route lost its action: %v", r)
		}
	}
	if c := doc.StaticResources.Clusters; len(c) != 1 || c[0].Name != "app" {
		t.Fatalf("clusters = %+v, want app alone", c)
	}
	// The rewritten addresses survive the round trip.
	if !strings.Contains(string(out), "port_value: 8080") || !strings.Contains(string(out), "port_value: 10000") {
		t.Fatalf("addresses lost:\n%s", out)
	}

	// Stripping twice finds none of the anchors and says so.
	_, err = stripExtProc(out)
	if err == nil || !strings.Contains(err.Error(), "http_filters") || !strings.Contains(err.Error(), "typed_per_filter_config") ||
		!strings.Contains(err.Error(), "cluster named gopotency") {
		t.Fatalf("want every missing anchor reported, got %v", err)
	}
}

func TestStripExtProcKeepsOtherPerFilterConfig(t *testing.T) {
	in := `
routes:
- route: {cluster: app}
  typed_per_filter_config:
    envoy.filters.http.ext_proc: {disabled: true}
    envoy.filters.http.cors: {allow_origin: ["*"]}
http_filters:
- name: envoy.filters.http.ext_proc
- name: envoy.filters.http.router
clusters:
- name: gopotency
- name: app
`
	out, err := stripExtProc([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if s := string(out); !strings.Contains(s, "envoy.filters.http.cors") || strings.Contains(s, "ext_proc") {
		t.Fatalf("got:\n%s", s)
	}
	if _, err := stripExtProc([]byte("a: [")); err == nil {
		t.Fatal("want a parse error")
	}
}
