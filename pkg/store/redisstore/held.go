package redisstore

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// held is what makes a Redis restart without persistence (or a failover to
// a replica that lacked the latest writes) re-run none of the requests in
// flight: the claims this Store made and has not seen settled. When the
// Watch sees Redis lose data, or a renewal finds its claim gone, the Store
// re-creates them all at once (Extend re-creates a vanished claim), while
// new keys are refused for the restart grace. Renewals alone would leave a
// wiped key free for up to a third of the lease.
//
// The loss is detected here, so it is answered here: the engine knows
// nothing of it.
type held struct {
	mu     sync.Mutex
	claims map[heldKey]*heldClaim
	// pruneAt: the size at which claims whose lease ran out (left to their
	// lease by retry_after_lease, never settled here) are dropped.
	pruneAt int

	// passing: a pass runs; again: another was asked for meanwhile, so
	// reports that arrive together cost one or two passes, not one each.
	passMu         sync.Mutex
	passing, again bool
}

type heldKey struct{ key, token string }

type heldClaim struct {
	// mu serialises a pass's Extend with the call that settles the claim:
	// once settled, no pass may re-create it (a late Extend would strand a
	// released key).
	mu   sync.Mutex
	c    idempotency.Claim
	gone bool // settled; under mu
	// until is the lease deadline on this machine's clock, measured from
	// the start of the call that set it (never later than the server's);
	// under held.mu.
	until time.Time
}

const minPruneAt = 1024

// hold records that c is held until its lease, counted from start, runs
// out: after Acquire and every renewal.
func (s *Store) hold(c idempotency.Claim, start time.Time) {
	h := &s.held
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.claims == nil {
		h.claims = map[heldKey]*heldClaim{}
	}
	k := heldKey{c.Key, c.Token}
	if hc, ok := h.claims[k]; ok {
		hc.until = start.Add(c.Lease)
		return
	}
	h.claims[k] = &heldClaim{c: c, until: start.Add(c.Lease)}
	if len(h.claims) >= max(h.pruneAt, minPruneAt) {
		now := time.Now()
		for k, hc := range h.claims {
			if !now.Before(hc.until) {
				delete(h.claims, k)
			}
		}
		h.pruneAt = 2 * len(h.claims)
	}
}

func (s *Store) drop(c idempotency.Claim) {
	s.held.mu.Lock()
	delete(s.held.claims, heldKey{c.Key, c.Token})
	s.held.mu.Unlock()
}

// settle runs call, the Complete or Release of c, and stops holding c once
// the claim is settled (or another token holds the key).
func (s *Store) settle(c idempotency.Claim, call func() error) error {
	s.held.mu.Lock()
	hc := s.held.claims[heldKey{c.Key, c.Token}]
	s.held.mu.Unlock()
	if hc == nil {
		return call()
	}
	hc.mu.Lock()
	defer hc.mu.Unlock()
	err := call()
	if err == nil || errors.Is(err, idempotency.ErrLeaseLost) {
		hc.gone = true
		s.drop(c)
	}
	return err
}

// reassert re-creates every claim held here whose lease has not run out.
// A call during a pass returns at once and one more pass follows.
func (s *Store) reassert() {
	h := &s.held
	h.passMu.Lock()
	if h.passing {
		h.again = true
		h.passMu.Unlock()
		return
	}
	h.passing = true
	h.passMu.Unlock()
	for {
		s.reassertOnce()
		h.passMu.Lock()
		again := h.again
		h.again, h.passing = false, again
		h.passMu.Unlock()
		if !again {
			return
		}
	}
}

func (s *Store) reassertOnce() {
	type due struct {
		hc   *heldClaim
		left time.Duration
	}
	now := time.Now()
	var claims []due
	s.held.mu.Lock()
	for k, hc := range s.held.claims {
		if left := hc.until.Sub(now); left > 0 {
			claims = append(claims, due{hc, left})
		} else {
			delete(s.held.claims, k) // left to its lease, which ran out
		}
	}
	s.held.mu.Unlock()
	if len(claims) == 0 {
		return
	}
	s.logger.Warn("redisstore: Redis may have lost claims; re-creating the ones held here", "claims", len(claims))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for _, d := range claims {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			d.hc.mu.Lock()
			defer d.hc.mu.Unlock()
			if d.hc.gone {
				return
			}
			c := d.hc.c
			c.Lease = d.left // the claim keeps the deadline it had
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			// Not reported as a loss: this pass covers every held claim.
			err := s.extend(ctx, c, false)
			switch {
			case errors.Is(err, idempotency.ErrLeaseLost):
				d.hc.gone = true
				s.drop(c)
			case err != nil:
				s.logger.Error("redisstore: could not re-create a held claim; its holder's next renewal will", "key_id", idempotency.KeyID(c.Key), "error", err)
			}
		}()
	}
	wg.Wait()
}
