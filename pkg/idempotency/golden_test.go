package idempotency_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/problems")

// TestProblemGolden pins every problem's wire form (status, headers, body)
// to the golden files in the repository's testdata/problems: the type URIs
// and bodies are API that clients switch on, so a change must show up in
// review. Regenerate with: go test ./pkg/idempotency -run Golden -update
func TestProblemGolden(t *testing.T) {
	cases := map[string]error{
		"key-missing":         idempotency.ErrKeyMissing,
		"key-malformed":       fmt.Errorf("%w: empty value", idempotency.ErrKeyMalformed),
		"request-in-progress": idempotency.ErrInFlight,
		"key-reused":          idempotency.ErrMismatch,
		"response-too-large":  idempotency.ErrRecordTooLarge,
		"request-too-large":   fmt.Errorf("%w: more than 1048576 bytes", idempotency.ErrRequestTooLarge),
		"store-unavailable":   fmt.Errorf("acquire: %w", idempotency.ErrStoreUnavailable),
		"internal":            fmt.Errorf("something unexpected"),
		"outcome-unknown":     idempotency.ErrOutcomeUnknown,
		"response-incomplete": &idempotency.StatusError{Err: idempotency.ErrResponseIncomplete, Status: 201},
		"response-evicted":    &idempotency.StatusError{Err: idempotency.ErrRecordEvicted, Status: 201},
		"server-busy":         idempotency.ErrServerBusy,
		"proxy-misconfigured": fmt.Errorf("%w: no contract", idempotency.ErrMisconfigured),
		"protocol-error":      idempotency.ErrProtocol,
	}
	// Every row of the table has a golden file.
	files, err := filepath.Glob(filepath.Join("..", "..", "testdata", "problems", "*.json"))
	require.NoError(t, err)
	if !*update {
		require.Len(t, files, len(cases), "a golden file without a case, or the reverse")
	}
	for slug, err := range cases {
		t.Run(slug, func(t *testing.T) {
			p := idempotency.ProblemFor(err)
			require.Equal(t, slug, p.Slug())
			got := golden(t, p)
			path := filepath.Join("..", "..", "testdata", "problems", slug+".json")
			if *update {
				require.NoError(t, os.WriteFile(path, got, 0o644))
			}
			want, rerr := os.ReadFile(path)
			require.NoError(t, rerr, "run with -update to create it")
			require.Equal(t, string(want), string(got))
		})
	}
}

// golden renders what a client receives, as a readable document.
func golden(t *testing.T, p *idempotency.Problem) []byte {
	headers := map[string]string{}
	for _, h := range p.Headers() {
		headers[h.Name] = h.Value
	}
	var body any
	require.NoError(t, json.Unmarshal(p.Body(), &body))
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	require.NoError(t, enc.Encode(map[string]any{"status": p.Status, "headers": headers, "body": body}))
	return b.Bytes()
}
