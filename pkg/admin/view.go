package admin

import (
	"encoding/base64"
	"slices"
	"time"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// stateCorrupt is the state an answer reports, beside idempotency.State's
// names, for an entry the store holds but cannot decode.
const stateCorrupt = "corrupt"

// fingerprintShown is how much of a fingerprint is shown: enough to tell
// two requests apart, too little to matter.
const fingerprintShown = 12

// entryView is what inspect answers and purge reports as the previous
// state. The body appears only when asked for.
type entryView struct {
	KeyID  string `json:"key_id"`
	Policy string `json:"policy"`
	// State: in_flight, lease_expired, completed or corrupt.
	State string `json:"state"`
	// Mark, Status, RecordedAt, Headers and the body describe a completed
	// record.
	Mark       string     `json:"mark,omitempty"`
	Status     int        `json:"status,omitempty"`
	RecordedAt *time.Time `json:"recorded_at,omitempty"`
	// ExpiresAt is when the store forgets the entry (its retention).
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// LeaseExpiresAt is when a claim's lease runs out unless renewed.
	LeaseExpiresAt *time.Time `json:"lease_expires_at,omitempty"`
	// Fingerprint is the start of the hex fingerprint the key is bound to.
	Fingerprint string   `json:"fingerprint,omitempty"`
	Headers     []string `json:"headers,omitempty"`
	BodyBytes   *int     `json:"body_bytes,omitempty"`
	BodyBase64  *string  `json:"body_base64,omitempty"`
	// Error is what the store said about a corrupt entry.
	Error string `json:"error,omitempty"`
	// Retry is what a retry with this key and the same request gets now.
	Retry  retryView  `json:"retry"`
	Inputs inputsView `json:"inputs"`
}

// retryView predicts the engine's answer to a retry.
type retryView struct {
	// Outcome: replay (the recorded response), reject (a problem), or run
	// (the request goes upstream).
	Outcome string `json:"outcome"`
	Status  int    `json:"status,omitempty"`
	Type    string `json:"type,omitempty"`
}

func newRetryView(d idempotency.Decision) retryView {
	switch d.Kind {
	case idempotency.Replay:
		return retryView{Outcome: "replay", Status: d.Record.Status}
	case idempotency.Reject:
		return retryView{Outcome: "reject", Status: d.Problem.Status, Type: d.Problem.Type}
	}
	return retryView{Outcome: "run"}
}

// view describes ent (nil with corrupt set for an undecodable entry).
func view(l *lookup, ent *idempotency.Entry, corrupt error, withBody bool) *entryView {
	v := &entryView{KeyID: l.keyID, Policy: l.policyName, Inputs: l.inputs}
	if corrupt != nil {
		v.State, v.Error = stateCorrupt, corrupt.Error()
		v.Retry = newRetryView(idempotency.RetryDecision(l.policy, &idempotency.Entry{}))
		return v
	}
	v.State = ent.State.String()
	v.ExpiresAt = timePtr(ent.ExpiresAt)
	v.LeaseExpiresAt = timePtr(ent.LeaseExpiresAt)
	v.Fingerprint = ent.Fingerprint[:min(fingerprintShown, len(ent.Fingerprint))]
	v.Retry = newRetryView(idempotency.RetryDecision(l.policy, ent))
	if rec := ent.Record; ent.State == idempotency.Completed && rec != nil {
		v.Mark, v.Status, v.RecordedAt = rec.Mark.String(), rec.Status, timePtr(rec.CreatedAt)
		for _, h := range rec.Headers {
			if !slices.Contains(v.Headers, h.Name) {
				v.Headers = append(v.Headers, h.Name)
			}
		}
		n := len(rec.Body)
		v.BodyBytes = &n
		if withBody {
			b := base64.StdEncoding.EncodeToString(rec.Body)
			v.BodyBase64 = &b
		}
	}
	return v
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// markLabel is the mark of a purged entry for metrics and logs.
func (v *entryView) markLabel() string {
	if v.Mark == "" {
		return "-"
	}
	return v.Mark
}
