{{/*
The Envoy side of the Istio and Envoy Gateway forms: what pkg/envoyconfig
(`gopotency envoy-config`) derives from gopotency's configuration, in Helm's
template language so that `helm install` needs no generator run. It covers
the headers-first subset of the generator the chart's values can express;
deploy/check renders every form, with several configurations, and fails
unless these objects equal the generator's output for the chart's own
ConfigMap (and the kustomize overlay's objects for the overlay's values).
*/}}

{{/* gopotency.policies: default_policy over the server's defaults, and
each named policy over default_policy (named policies inherit it, field
by field), as JSON: {"default": {...}, "named": {name: {...}}}. Only the
fields the Envoy side depends on need defaults here. */}}
{{- define "gopotency.policies" -}}
{{- $def := dict "methods" (list "POST" "PATCH") "key_header" "Idempotency-Key" "key_required" false "fingerprint" "body" "max_request_body" 1048576 "scope_principal" false -}}
{{- range $k, $v := (.Values.config.default_policy | default dict) -}}
{{- $_ := set $def $k $v -}}
{{- end -}}
{{- $named := dict -}}
{{- range $n, $p := (.Values.config.policies | default dict) -}}
{{- $q := deepCopy $def -}}
{{- range $k, $v := ($p | default dict) -}}
{{- $_ := set $q $k $v -}}
{{- end -}}
{{- $_ := set $named $n $q -}}
{{- end -}}
{{- toJson (dict "default" $def "named" $named) -}}
{{- end -}}

{{/* gopotency.ms: a Go duration of whole h, m, s, ms units in
milliseconds (the schema admits no other form). */}}
{{- define "gopotency.ms" -}}
{{- $d := toString . -}}
{{- if not (regexMatch "^([0-9]+(h|ms|m|s))+$" $d) -}}
{{- fail (printf "duration %q: write whole h, m, s or ms units (1s, 1500ms, 1m30s)" $d) -}}
{{- end -}}
{{- $ms := 0 -}}
{{- range regexFindAll "[0-9]+(h|ms|m|s)" $d -1 -}}
{{- $n := regexFind "^[0-9]+" . | atoi -}}
{{- $u := trimPrefix (regexFind "^[0-9]+" .) . -}}
{{- $ms = add $ms (mul $n (get (dict "h" 3600000 "m" 60000 "s" 1000 "ms" 1) $u)) -}}
{{- end -}}
{{- $ms -}}
{{- end -}}

{{/* gopotency.secs: milliseconds as protobuf JSON writes a Duration
("30s", "1.5s"). */}}
{{- define "gopotency.secs" -}}
{{- $ms := int64 . -}}
{{- if eq (mod $ms 1000) 0 -}}
{{- printf "%ds" (div $ms 1000) -}}
{{- else -}}
{{- printf "%s.%s" (toString (div $ms 1000)) (printf "%03d" (mod $ms 1000) | trimSuffix "0" | trimSuffix "0") -}}s
{{- end -}}
{{- end -}}

{{/* gopotency.needsBody: whether a policy reads request bodies, with
(hasKey true) or without a key (NeedsBody in pkg/idempotency). */}}
{{- define "gopotency.needsBody" -}}
{{- $p := .p -}}
{{- $auto := $p.auto_key | default dict -}}
{{- if or (eq (toString $p.fingerprint) "body") (and (not .hasKey) $p.auto_key (or $auto.body $auto.json_fields)) -}}true{{- end -}}
{{- end -}}

{{/* gopotency.requestAttributes: what a header map cannot carry, for the
policies that use it (the contract's attributes of pkg/extproc, less the
request ones headers-first streams carry themselves), as a JSON list. */}}
{{- define "gopotency.requestAttributes" -}}
{{- $pols := fromJson (include "gopotency.policies" .) -}}
{{- $all := append (values $pols.named) $pols.default -}}
{{- $principal := false -}}
{{- $address := false -}}
{{- range $all -}}
{{- if .scope_principal -}}{{- $principal = true -}}{{- end -}}
{{- if and .auto_key (.auto_key | default dict).source_address -}}{{- $address = true -}}{{- end -}}
{{- end -}}
{{- $attrs := list -}}
{{- if $principal -}}{{- $attrs = concat $attrs (list "connection.mtls" "connection.uri_san_peer_certificate" "connection.subject_peer_certificate") -}}{{- end -}}
{{- if $address -}}{{- $attrs = append $attrs "source.address" -}}{{- end -}}
{{- if (.Values.config.ext_proc | default dict).route_policies -}}{{- $attrs = append $attrs "xds.route_name" -}}{{- end -}}
{{- toJson $attrs -}}
{{- end -}}

{{/* gopotency.routePolicies: the policies ext_proc.route_policies can
select, in the order of their sorted prefixes, as a JSON list. */}}
{{- define "gopotency.routePolicies" -}}
{{- $pols := fromJson (include "gopotency.policies" .) -}}
{{- $rp := (.Values.config.ext_proc | default dict).route_policies | default dict -}}
{{- $out := list -}}
{{- range $prefix := keys $rp | sortAlpha -}}
{{- $name := get $rp $prefix -}}
{{- if not (hasKey $pols.named $name) -}}
{{- fail (printf "config.ext_proc.route_policies: route %q names policy %q, which config.policies does not define" $prefix $name) -}}
{{- end -}}
{{- $out = append $out (get $pols.named $name) -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* gopotency.policyNamed: the named policy, or a clear failure. */}}
{{- define "gopotency.policyNamed" -}}
{{- $pols := fromJson (include "gopotency.policies" .root) -}}
{{- if not (hasKey $pols.named .name) -}}
{{- fail (printf "%s: policy %q is not defined under config.policies" .at .name) -}}
{{- end -}}
{{- toJson (get $pols.named .name) -}}
{{- end -}}

{{/* gopotency.bufferLimit: Envoy's per-connection buffer limit for
bodies capped at .largest: above it by a margin (64 KiB), so a body over
the cap reaches gopotency and gets its 413 problem. */}}
{{- define "gopotency.bufferLimit" -}}
{{- $largest := int64 .largest -}}
{{- if eq $largest 0 -}}{{- $largest = 1048576 -}}{{- end -}}
{{- $limit := add $largest 65536 -}}
{{- if gt (int64 $limit) 4294967295 -}}
{{- fail (printf "max_request_body %d: Envoy's buffer limit is a 32-bit count; keep it under %d" $largest (sub 4294967295 65536)) -}}
{{- end -}}
{{- $limit -}}
{{- end -}}

{{/* gopotency.extprocFilter: the ext_proc filter's typed_config
(pkg/envoyconfig's extproc.tmpl), at column 0. .root is the chart
context, .metadata the policy of every request ("" for none). */}}
{{- define "gopotency.extprocFilter" -}}
{{- $r := .root -}}
{{- $mmt := 0 -}}
{{- with ($r.Values.config.ext_proc | default dict).max_message_timeout }}{{ $mmt = include "gopotency.ms" . | int64 }}{{ end -}}
{{- $attrs := fromJsonArray (include "gopotency.requestAttributes" $r) -}}
"@type": type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor
grpc_service:
  envoy_grpc: {cluster_name: {{ printf "outbound|9002||%s" (include "gopotency.host" $r) | quote }}}
{{- with .metadata }}
  # The policy of every request this filter sees.
  initial_metadata: [{key: {{ include "gopotency.policyHeader" $r | quote }}, value: {{ . | quote }}}]
{{- end }}
# Fail closed: if GoPotency is down, answer 503 rather than
# let a retried payment run twice.
failure_mode_allow: false
status_on_error: {code: ServiceUnavailable}
# Above the server's store_timeout (one store call per
# message); a wait for an in-flight duplicate raises it per
# request, up to max_message_timeout (ext_proc.max_message_timeout).
message_timeout: {{ include "gopotency.secs" (include "gopotency.ms" $r.Values.messageTimeout) }}
{{- if $mmt }}
max_message_timeout: {{ include "gopotency.secs" $mmt }}
{{- end }}
allow_mode_override: true
# Headers-first: request headers only; GoPotency turns on the
# body and response phases per request.
processing_mode:
  request_header_mode: SEND
  response_header_mode: SKIP
  request_body_mode: NONE
  response_body_mode: NONE
  request_trailer_mode: SKIP
  response_trailer_mode: SKIP
{{- with $attrs }}
# What a header map cannot carry, for the policies that use it.
request_attributes: {{ toJson . }}
{{- end }}
# Tells responses Envoy made itself (connect failures,
# timeouts) from the upstream's own.
response_attributes: ["response.code_details"]
# GoPotency never changes bodies, so the upstream's
# Content-Length is true; keep it instead of chunking.
allow_content_length_header: true
{{- end -}}

{{- define "gopotency.policyHeader" -}}
{{- (.Values.config.ext_proc | default dict).policy_header | default "x-gopotency-policy" -}}
{{- end -}}

{{/* gopotency.absent: a matcher predicate holding when header is absent
or does not fully match regex, at column 0. */}}
{{- define "gopotency.absent" -}}
not_matcher:
  single_predicate:
    input:
      name: {{ .name | quote }}
      typed_config: {"@type": type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput, header_name: {{ .header | quote }}}
    value_match: {safe_regex: {google_re2: {}, regex: {{ .regex | quote }}}}
{{- end -}}

{{/* gopotency.skipPredicate: what the filter may skip whatever the
route, for a filter that can apply the policies .pols: methods none of
them guards, and, when none requires a key or derives one, requests
carrying none of their key headers. */}}
{{- define "gopotency.skipPredicate" -}}
{{- $methods := list -}}
{{- $keys := list -}}
{{- $keyed := true -}}
{{- range .pols -}}
{{- $methods = concat $methods .methods -}}
{{- $keys = append $keys (lower .key_header) -}}
{{- if or .key_required .auto_key -}}{{- $keyed = false -}}{{- end -}}
{{- end -}}
{{- $method := include "gopotency.absent" (dict "name" "request-method" "header" ":method" "regex" ($methods | uniq | sortAlpha | join "|")) -}}
{{- if not $keyed -}}
{{- $method -}}
{{- else -}}
{{- $absent := list -}}
{{- range $keys | uniq | sortAlpha -}}
{{- $absent = append $absent (include "gopotency.absent" (dict "name" (printf "key-%s" .) "header" . "regex" ".*")) -}}
{{- end -}}
or_matcher:
  predicate:
  - {{ $method | nindent 4 | trim }}
{{- if eq (len $absent) 1 }}
  - {{ first $absent | nindent 4 | trim }}
{{- else }}
  - and_matcher:
      predicate:
{{- range $absent }}
      - {{ . | nindent 8 | trim }}
{{- end }}
{{- end }}
{{- end -}}
{{- end -}}
