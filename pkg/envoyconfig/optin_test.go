package envoyconfig

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

// The ext_proc filter is off on the chain and on only where a route turns
// it on, so unguarded traffic does not instantiate it. The price: a route
// that forgets to turn it on is unguarded. So every route the plan sends
// to GoPotency must carry FilterConfig with the ExtProcPerRoute settings,
// and skip routes nothing of it, in both layouts.
func TestEveryGuardedRouteTurnsTheFilterOn(t *testing.T) {
	for _, bodyFirst := range []string{"false", "true"} {
		p := plan(t, policies+envoySection+"  body_first: "+bodyFirst+"\n"+routes)
		out, err := p.Envoy("test")
		require.NoError(t, err)
		var doc struct {
			StaticResources struct {
				Listeners []struct {
					FilterChains []struct {
						Filters []struct {
							TypedConfig struct {
								RouteConfig struct {
									VirtualHosts []struct {
										Routes []struct {
											Name                 string                    `yaml:"name"`
											TypedPerFilterConfig map[string]map[string]any `yaml:"typed_per_filter_config"`
										} `yaml:"routes"`
									} `yaml:"virtual_hosts"`
								} `yaml:"route_config"`
								HTTPFilters []struct {
									Name     string `yaml:"name"`
									Disabled bool   `yaml:"disabled"`
								} `yaml:"http_filters"`
							} `yaml:"typed_config"`
						} `yaml:"filters"`
					} `yaml:"filter_chains"`
				} `yaml:"listeners"`
			} `yaml:"static_resources"`
		}
		require.NoError(t, yaml.Unmarshal(out, &doc))
		hcm := doc.StaticResources.Listeners[0].FilterChains[0].Filters[0].TypedConfig
		require.Equal(t, "envoy.filters.http.ext_proc", hcm.HTTPFilters[0].Name)
		assert.True(t, hcm.HTTPFilters[0].Disabled, "the filter is off on the chain")
		rs := hcm.RouteConfig.VirtualHosts[0].Routes
		require.Len(t, rs, len(p.Classes))
		guarded := 0
		for i, k := range p.Classes {
			r := rs[i]
			require.Equal(t, k.Name, r.Name)
			cfg, on := r.TypedPerFilterConfig["envoy.filters.http.ext_proc"]
			if k.Action == Skip {
				assert.False(t, on, "%s: a skip route leaves the filter off", k.Name)
				continue
			}
			guarded++
			if assert.True(t, on, "%s: a guarded route must turn the filter on", k.Name) {
				assert.Equal(t, "type.googleapis.com/envoy.config.route.v3.FilterConfig", cfg["@type"], k.Name)
				assert.NotEqual(t, true, cfg["disabled"], k.Name)
				inner, _ := cfg["config"].(map[string]any)
				assert.Equal(t, "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute", inner["@type"], k.Name)
				assert.Contains(t, inner, "overrides", k.Name)
			}
		}
		assert.Positive(t, guarded, "the plan guards some routes")
	}
}
