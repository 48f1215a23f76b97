package config

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// TestEverySettingIsDocumented: a setting is declared once, in a struct
// tag (idempotency.Policy's included), and documented in docs/configuration.md; a key
// missing from the reference fails here.
func TestEverySettingIsDocumented(t *testing.T) {
	raw, err := os.ReadFile("../../docs/configuration.md")
	require.NoError(t, err)
	doc := string(raw)
	var keys []string
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for f := range typ.Fields() {
			name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			switch {
			case name == "-" || !f.IsExported():
			case opts == "inline":
				walk(prefix, f.Type)
			case f.Type.Kind() == reflect.Struct:
				walk(prefix+name+".", f.Type)
			default:
				keys = append(keys, prefix+name)
			}
		}
	}
	walk("", reflect.TypeFor[Config]())
	walk("", reflect.TypeFor[Envoy]())
	for k := range settingKeys(reflect.TypeFor[idempotency.Policy]()) {
		keys = append(keys, k)
	}
	require.Subset(t, keys, []string{"grpc_addr", "log.level", "replay_cache.ttl", "ext_proc.max_buffered_bytes", "grpc_tls.cert_file", "admin.token_file", "message_timeout", "max_request_body"})
	for _, k := range keys {
		require.Contains(t, doc, "`"+k+"`", "docs/configuration.md does not document %s", k)
	}
	// auto_key's row names each of its keys in its example mapping.
	for k := range settingKeys(reflect.TypeFor[idempotency.AutoKey]()) {
		require.True(t, strings.Contains(doc, k+": "), "docs/configuration.md does not document auto_key.%s", k)
	}
}
