// Package demoapp is the toy payments API the demo and docker-compose put
// behind Envoy: every POST /payments "charges" a card, slowly, and counts
// how often it really ran.
package demoapp

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"
)

// App is the payments API.
type App struct {
	// Delay is how long a charge takes (the window for a concurrent
	// duplicate).
	Delay   time.Duration
	charges atomic.Int64
}

// Charges returns how many charges really ran.
func (a *App) Charges() int64 { return a.charges.Load() }

func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodPost && (r.URL.Path == "/payments" || r.URL.Path == "/orders"):
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "cannot read body", http.StatusBadRequest)
			return
		}
		n := a.charges.Add(1)
		time.Sleep(a.Delay)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Location", fmt.Sprintf("%s/%d", r.URL.Path, n))
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]any{"id": n, "status": "charged", "request": json.RawMessage(orNull(body)),
			"charged_at": time.Now().UTC().Format(time.RFC3339Nano)})
	case r.Method == http.MethodGet && r.URL.Path == "/stats":
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]int64{"charges": a.Charges()})
	default:
		http.NotFound(w, r)
	}
}

func orNull(b []byte) []byte {
	if !json.Valid(b) {
		return []byte("null")
	}
	return b
}
