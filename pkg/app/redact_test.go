package app

import "testing"

// What the start-up line and store errors show of a URL: never a password,
// wherever the URL carries it, and of an OTLP endpoint no user part or
// query (a token).
func TestURLsAreShownWithoutSecrets(t *testing.T) {
	for raw, want := range map[string]string{
		"redis://default:s3cret@r:6379/0?replicas=1":    "redis://default:xxxxx@r:6379/0?replicas=1",
		"postgres://app@db:5432/gp?password=s3cret&x=1": "postgres://app@db:5432/gp?password=xxxxx&x=1",
		"memory://": "memory://",
		"%zz":       "<unparsable URL>",
	} {
		if got := redactURL(raw); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", raw, got, want)
		}
	}
	for raw, want := range map[string]string{
		"https://TOKEN@otlp.example:4318/v1/traces?api_key=s3cret": "https://otlp.example:4318/v1/traces",
		"": "",
	} {
		if got := endpointOf(raw); got != want {
			t.Errorf("endpointOf(%q) = %q, want %q", raw, got, want)
		}
	}
}
