package config

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// A policy setting is defined once, as a field of idempotency.Policy (or
// AutoKey) whose yaml tag is its key; the core needs no YAML library for
// that. A policy section is decoded onto a copy of the policy it inherits
// (idempotency.DefaultPolicy, or default_policy for a named one), as
// opa-envoy-plugin decodes onto its defaults, so a key left out keeps the
// inherited value. Adding a setting is one field with its tag and one row
// in docs/configuration.md.

// decodePolicy decodes the YAML mapping n onto p. Bad values and unknown
// keys join typeErrs, to be reported with the rest of the file's; values
// wrong in themselves are Policy.Validate's to report.
func decodePolicy(n *yaml.Node, p *idempotency.Policy, typeErrs *[]string) {
	decodeOnto(n, reflect.ValueOf(p).Elem(), typeErrs)
}

// settingKeys maps the yaml key of each field of the struct type t to
// the field's index.
func settingKeys(t reflect.Type) map[string]int {
	keys := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); name != "" && name != "-" {
			keys[name] = i
		}
	}
	return keys
}

// decodeOnto decodes the mapping n onto the struct v with yaml, after
// taking out what yaml cannot decode by itself or would decode otherwise
// than the file means: unknown keys (reported), null values and empty
// strings (both keep the inherited value, as they always have) and nested sections such as auto_key (which replace
// the inherited one as a whole: their parts only make sense together).
// Durations decode as time.Duration; Load rewords yaml's error for a bad
// one (clearDurationErrors). Slices decode into new backing arrays, never
// shared with another policy.
func decodeOnto(n *yaml.Node, v reflect.Value, typeErrs *[]string) {
	if n == nil || n.Kind == 0 || n.Tag == "!!null" {
		return
	}
	if n.Kind != yaml.MappingNode {
		*typeErrs = append(*typeErrs, fmt.Sprintf("line %d: want a mapping of settings", n.Line))
		return
	}
	keys := settingKeys(v.Type())
	rest := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: n.Line, Column: n.Column}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		idx, ok := keys[k.Value]
		if !ok {
			*typeErrs = append(*typeErrs, fmt.Sprintf("line %d: field %s not found", k.Line, k.Value))
			continue
		}
		f := v.Field(idx)
		switch {
		case val.Tag == "!!null":
		case val.Tag == "!!str" && val.Value == "" && f.Kind() == reflect.String:
		case f.Kind() == reflect.Pointer && f.Type().Elem().Kind() == reflect.Struct:
			section := reflect.New(f.Type().Elem())
			decodeOnto(val, section.Elem(), typeErrs)
			f.Set(section)
		default:
			rest.Content = append(rest.Content, k, val)
		}
	}
	if err := rest.Decode(v.Addr().Interface()); err != nil {
		*typeErrs = append(*typeErrs, yamlErrors(err)...)
	}
}

// yamlErrors lists the messages of a yaml decoding error.
func yamlErrors(err error) []string {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return te.Errors
	}
	return []string{err.Error()}
}
