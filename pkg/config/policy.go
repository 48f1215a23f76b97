package config

import (
	"errors"
	"fmt"
	"reflect"

	"gopkg.in/yaml.v3"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// policyKeys is the one place a policy setting gets its YAML name: each
// key points at the field of p it sets. A policy section is decoded onto
// a copy of the policy it inherits (idempotency.DefaultPolicy, or
// default_policy for a named one), as opa-envoy-plugin decodes onto its
// defaults, so a key left out keeps the inherited value and no setting
// needs a mirror field or a default of its own here. Adding a Policy
// setting is one line here and one row in docs/configuration.md.
func policyKeys(p *idempotency.Policy) map[string]any {
	return map[string]any{
		"methods":             &p.Methods,
		"key_header":          &p.KeyHeader,
		"key_required":        &p.KeyRequired,
		"retention":           &p.Retention,
		"lease":               &p.Lease,
		"fingerprint":         &p.Fingerprint,
		"fingerprint_headers": &p.FingerprintHeaders,
		"canonical_json":      &p.CanonicalJSON,
		"scope_headers":       &p.ScopeHeaders,
		"scope_principal":     &p.ScopePrincipal,
		"do_not_store":        &p.DoNotStore,
		"replay_denylist":     &p.ReplayDenylist,
		"replay_allowlist":    &p.ReplayAllowlist,
		"max_request_body":    &p.MaxRequestBody,
		"max_response_body":   &p.MaxResponseBody,
		"wait_in_flight":      &p.WaitInFlight,
		"fail_open":           &p.FailOpen,
		"retry_after":         &p.RetryAfter,
		"unknown_outcome":     &p.UnknownOutcome,
		"auto_key":            &p.AutoKey,
	}
}

// autoKeyKeys names the settings of a policy's auto_key section.
func autoKeyKeys(a *idempotency.AutoKey) map[string]any {
	return map[string]any{
		"headers":        &a.Headers,
		"body":           &a.Body,
		"json_fields":    &a.JSONFields,
		"source_address": &a.SourceAddress,
	}
}

// decodePolicy sets the fields of p that the YAML mapping n names. Bad
// values and unknown keys join typeErrs, to be reported with the rest of
// the file's; a value malformed in itself (do_not_store) is returned.
func decodePolicy(n *yaml.Node, p *idempotency.Policy, typeErrs *[]string) error {
	var valueErr error
	decodeKeys(n, policyKeys(p), typeErrs, &valueErr)
	return valueErr
}

// decodeKeys decodes each key of the mapping n into the field keys names.
// An empty or null value is the same as a key left out, as it was when
// policies were read into pointer fields.
func decodeKeys(n *yaml.Node, keys map[string]any, typeErrs *[]string, valueErr *error) {
	if n == nil || n.Kind == 0 || n.Tag == "!!null" {
		return
	}
	if n.Kind != yaml.MappingNode {
		*typeErrs = append(*typeErrs, fmt.Sprintf("line %d: want a mapping of settings", n.Line))
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		dst, ok := keys[k.Value]
		if !ok {
			*typeErrs = append(*typeErrs, fmt.Sprintf("line %d: field %s not found", k.Line, k.Value))
			continue
		}
		if v.Tag == "!!null" {
			continue
		}
		if err := decodeValue(v, dst, typeErrs); err != nil && *valueErr == nil {
			*valueErr = fmt.Errorf("%s: %w", k.Value, err)
		}
	}
}

// decodeValue decodes one setting; the types YAML cannot decode by itself
// (status sets, auto_key) are handled here. An empty string keeps the
// inherited value, as it always has. Durations decode as time.Duration;
// Load rewords yaml's error for a bad one (clearDurationErrors).
func decodeValue(v *yaml.Node, dst any, typeErrs *[]string) error {
	var err error
	switch dst := dst.(type) {
	case *idempotency.StatusSet:
		var codes []string
		if err = v.Decode(&codes); err == nil {
			s, perr := idempotency.ParseStatusSet(codes...)
			if perr != nil {
				return perr
			}
			*dst = s
		}
	case **idempotency.AutoKey:
		// auto_key replaces the inherited one as a whole: its parts only
		// make sense together.
		a := &idempotency.AutoKey{}
		var valueErr error
		decodeKeys(v, autoKeyKeys(a), typeErrs, &valueErr)
		*dst = a
		return valueErr
	case *[]string:
		var s []string
		if err = v.Decode(&s); err == nil {
			*dst = append([]string(nil), s...) // never shared with another policy
		}
	default:
		if v.Tag == "!!str" && v.Value == "" && reflect.ValueOf(dst).Elem().Kind() == reflect.String {
			return nil
		}
		err = v.Decode(dst)
	}
	if err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			te = &yaml.TypeError{Errors: []string{err.Error()}}
		}
		*typeErrs = append(*typeErrs, te.Errors...)
	}
	return nil
}
