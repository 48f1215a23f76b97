package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// startProfiles asks every gopotency server for a CPU profile covering d
// (the scenario's measurement, all targets included: a server is idle
// while the others are measured, and idle time costs no samples). The
// returned function waits for them and writes dir/<scenario>-<target>.pprof.
func startProfiles(dir string, sc scenario, targets []target, d time.Duration) func() error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []string
	secs := int(d.Seconds()) + 1
	for _, t := range targets {
		if t.Kind != kindGopotency || len(t.server.addrs) < 2 {
			continue
		}
		name := sc.Name + "-" + slug(strings.TrimPrefix(t.Name, "Envoy + ")) + ".pprof"
		url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", t.server.addrs[1], secs)
		wg.Go(func() {
			err := fetchTo(url, filepath.Join(dir, name), time.Duration(secs+30)*time.Second)
			if err != nil {
				mu.Lock()
				errs = append(errs, name+": "+err.Error())
				mu.Unlock()
			}
		})
	}
	return func() error {
		wg.Wait()
		if len(errs) > 0 {
			return fmt.Errorf("%s", strings.Join(errs, "; "))
		}
		return nil
	}
}

func fetchTo(url, path string, timeout time.Duration) error {
	c := &http.Client{Timeout: timeout}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d (is --pprof on?)", resp.StatusCode)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// slug keeps letters and digits, dashes for the rest.
func slug(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	return strings.TrimSuffix(b.String(), "-")
}
