package app

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// ProbeCommand is the subcommand name: `gopotency probe`.
const ProbeCommand = "probe"

// defaultProbeURL is the readiness endpoint of the default admin_addr.
const defaultProbeURL = "http://127.0.0.1:9003/readyz"

// Probe runs `gopotency probe [URL]`: GET an admin endpoint and exit 0 only
// on 200. The image is distroless (no shell, no curl), so container health
// checks (docker-compose) run the binary itself.
func Probe(ctx context.Context, args []string, stderr io.Writer) error {
	url := defaultProbeURL
	switch len(args) {
	case 0:
	case 1:
		url = args[0]
	default:
		return fmt.Errorf("usage: gopotency probe [URL] (default %s)", defaultProbeURL)
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("probe %s: %s: %s", url, resp.Status, body)
	}
	_, _ = stderr.Write(body)
	return nil
}
