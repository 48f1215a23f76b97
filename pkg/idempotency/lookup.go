package idempotency

// Lookups for operator tools (the admin API): they answer "where does the
// engine keep this request, and what would a retry get now" from the same
// functions Begin uses, so a tool never hashes a key differently from the
// engine that wrote it.

// RequestKey returns the storage key under which Engine.Begin keeps r under
// p, and whether the key was derived from the request (AutoKey) rather than
// sent in p.KeyHeader. It returns "" when Begin would let r through without
// claiming anything: r sends no key and p derives none, or the key would be
// derived but r carries no caller identity (anonymous derived keys are not
// deduplicated). A malformed key header is an error wrapping
// ErrKeyMalformed, as in Begin.
//
// Only the inputs of the key are read: the key header, p.ScopeHeaders,
// r.Principal under p.ScopePrincipal and, for a derived key, what p.AutoKey
// hashes (method, path, its headers, the body) and r.SourceAddress. Whether
// p applies to r.Method is not checked.
func RequestKey(p *Policy, r *Request) (key string, derived bool, err error) {
	raw, fromHeader, err := requestKey(p, r)
	if err != nil || raw == "" {
		return "", false, err
	}
	scope := callerScope(p, r)
	if !fromHeader {
		if scope = derivedScope(p, r, scope); scope == "" {
			return "", true, nil
		}
	}
	return StorageKey(scope, raw), !fromHeader, nil
}

// RetryDecision returns what Begin answers, under p, to a retry whose key is
// in entry's state with the same fingerprint: a Replay of the record, the
// Reject its mark or state stands for, or Proceed when the retry would run
// (an absent key, given as nil; an expired lease under
// UnknownRetryAfterLease). The decision carries no Lease; it is a
// prediction for operators, not a claim.
func RetryDecision(p *Policy, entry *Entry) Decision {
	if entry == nil {
		return Decision{Kind: Proceed}
	}
	switch entry.State {
	case InFlight:
		d := reject(ErrInFlight, "")
		d.Problem.RetryAfter = p.RetryAfter
		return d
	case LeaseExpired:
		if p.UnknownOutcome == UnknownRetryAfterLease {
			return Decision{Kind: Proceed}
		}
		return reject(ErrOutcomeUnknown, "")
	case Completed:
		if entry.Record != nil {
			return completed(entry.Record, "")
		}
	}
	return reject(ErrCorruptRecord, "")
}
