package main

import (
	"io"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/gopotency/gopotency/pkg/config"
)

func shippedConfig(t *testing.T) *config.Config {
	t.Helper()
	c, err := config.Load([]string{"--config", filepath.Join("..", "..", "envoy", "gopotency.yaml")}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type envoyDoc struct {
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

func TestBaselineIsTheShippedRoutesWithoutGoPotency(t *testing.T) {
	for _, bodyFirst := range []bool{false, true} {
		out, err := envoyConfig(shippedConfig(t), 10000, 9901, "127.0.0.1:9002", "127.0.0.1:8080", bodyFirst, true)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if l := strings.TrimSpace(line); !strings.HasPrefix(l, "#") && (strings.Contains(l, "ext_proc") || strings.Contains(l, "gopotency") || strings.Contains(l, bufferFilter)) {
				t.Fatalf("baseline still configures GoPotency: %q\n%s", l, out)
			}
		}
		var doc envoyDoc
		if err := yaml.Unmarshal(out, &doc); err != nil {
			t.Fatal(err)
		}
		hcm := doc.StaticResources.Listeners[0].FilterChains[0].Filters[0].TypedConfig
		if len(hcm.HTTPFilters) != 1 || hcm.HTTPFilters[0].Name != "envoy.filters.http.router" {
			t.Fatalf("http_filters = %+v, want the router alone", hcm.HTTPFilters)
		}
		routes := hcm.RouteConfig.VirtualHosts[0].Routes
		if len(routes) != 3 {
			t.Fatalf("want one route per configured prefix (3), got %d", len(routes))
		}
		for _, r := range routes {
			if _, ok := r["typed_per_filter_config"]; ok {
				t.Fatalf("route kept an empty typed_per_filter_config: %v", r)
			}
			if m := r["match"].(map[string]any); m["headers"] != nil {
				t.Fatalf("baseline route has GoPotency's matchers: %v", r)
			}
		}
		if c := doc.StaticResources.Clusters; len(c) != 1 || c[0].Name != "app" {
			t.Fatalf("clusters = %+v, want app alone", c)
		}
		if !strings.Contains(string(out), "port_value: 8080") || !strings.Contains(string(out), "port_value: 10000") {
			t.Fatalf("addresses lost:\n%s", out)
		}
		// Stripping twice finds none of the anchors and says so.
		_, err = stripExtProc(out)
		if err == nil || !strings.Contains(err.Error(), "http_filters") || !strings.Contains(err.Error(), "cluster named gopotency") {
			t.Fatalf("want every missing anchor reported, got %v", err)
		}
	}
}

func TestTargetConfigPointsAtItsServer(t *testing.T) {
	out, err := envoyConfig(shippedConfig(t), 10000, 9901, "unix:///tmp/gp.sock", "127.0.0.1:8080", true, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`{pipe: {path: "/tmp/gp.sock"}}`, "request_header_mode: SKIP", "port_value: 10000", "port_value: 9901"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("target config lacks %q", want)
		}
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
