package idempotent_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/gopotency/gopotency/pkg/behaviortest"
	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/idempotent"
	"github.com/gopotency/gopotency/pkg/store/memstore"
)

func newRunner(t *testing.T, store idempotency.Store, opts ...idempotent.Option) *idempotent.Runner {
	t.Helper()
	if store == nil {
		s := memstore.New(memstore.Options{})
		t.Cleanup(func() { _ = s.Close() })
		store = s
	}
	r, err := idempotent.NewRunner(store, "test", opts...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestNewRunnerRejectsBadConfig(t *testing.T) {
	s := memstore.New(memstore.Options{})
	defer s.Close()
	bad := idempotency.DefaultPolicy()
	bad.Retention = 0
	for name, f := range map[string]func() (*idempotent.Runner, error){
		"nil store": func() (*idempotent.Runner, error) { return idempotent.NewRunner(nil, "x") },
		"no name":   func() (*idempotent.Runner, error) { return idempotent.NewRunner(s, "") },
		"policy":    func() (*idempotent.Runner, error) { return idempotent.NewRunner(s, "x", idempotent.WithPolicy(&bad)) },
		"codec":     func() (*idempotent.Runner, error) { return idempotent.NewRunner(s, "x", idempotent.WithCodec(nil)) },
	} {
		if _, err := f(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// An empty key is an error by default, never an unguarded run.
func TestKeyRequiredByDefault(t *testing.T) {
	runs := 0
	_, err := idempotent.Run(context.Background(), newRunner(t, nil), "", 1, func(context.Context) (int, error) { runs++; return 1, nil })
	var refused *idempotent.Error
	if !errors.As(err, &refused) || !errors.Is(err, idempotency.ErrKeyMissing) || runs != 0 {
		t.Errorf("err %v, runs %d; want ErrKeyMissing and no run", err, runs)
	}
}

// A policy built from idempotency.DefaultPolicy (KeyRequired false) still
// refuses an empty key: only WithOptionalKey lets it run unguarded.
func TestKeyRequiredWhateverThePolicy(t *testing.T) {
	p := idempotency.DefaultPolicy()
	for name, tc := range map[string]struct {
		opts []idempotent.Option
		runs int
	}{
		"DefaultPolicy":   {[]idempotent.Option{idempotent.WithPolicy(&p)}, 0},
		"WithOptionalKey": {[]idempotent.Option{idempotent.WithPolicy(&p), idempotent.WithOptionalKey()}, 2},
	} {
		runs := 0
		r := newRunner(t, nil, tc.opts...)
		for range 2 {
			_, err := idempotent.Run(context.Background(), r, "", 1, func(context.Context) (int, error) { runs++; return 1, nil })
			if wantErr := tc.runs == 0; errors.Is(err, idempotency.ErrKeyMissing) != wantErr {
				t.Errorf("%s: err %v, want ErrKeyMissing %v", name, err, wantErr)
			}
		}
		if runs != tc.runs {
			t.Errorf("%s: ran %d times, want %d", name, runs, tc.runs)
		}
	}
}

func TestUncertainClassification(t *testing.T) {
	for err, want := range map[error]bool{
		errors.New("plain"):                                           false,
		idempotent.Uncertain(errors.New("lost")):                      true,
		fmt.Errorf("call: %w", context.Canceled):                      true,
		fmt.Errorf("call: %w", context.DeadlineExceeded):              true,
		fmt.Errorf("read: %w", os.ErrDeadlineExceeded):                true,
		fmt.Errorf("wrapped: %w", idempotent.Uncertain(os.ErrClosed)): true,
	} {
		if got := idempotent.IsUncertain(err); got != want {
			t.Errorf("IsUncertain(%v) = %v, want %v", err, got, want)
		}
	}
	if idempotent.Uncertain(nil) != nil {
		t.Error("Uncertain(nil) is not nil")
	}
}

// A panic releases the key and goes on: the retry runs.
func TestPanicReleases(t *testing.T) {
	r := newRunner(t, nil)
	runs := 0
	fn := func(context.Context) (int, error) {
		runs++
		if runs == 1 {
			panic("boom")
		}
		return runs, nil
	}
	func() {
		defer func() {
			if v := recover(); v != "boom" {
				t.Errorf("recovered %v, want the panic", v)
			}
		}()
		_, _ = idempotent.Run(context.Background(), r, "k", nil, fn)
	}()
	if v, err := idempotent.Run(context.Background(), r, "k", nil, fn); err != nil || v != 2 {
		t.Errorf("retry: %v %v, want a fresh run", v, err)
	}
}

// A result written by another codec is refused, never misread or re-run.
func TestCodecChangeRefused(t *testing.T) {
	s := memstore.New(memstore.Options{})
	defer s.Close()
	ctx := context.Background()
	if _, err := idempotent.Run(ctx, newRunner(t, s), "k", nil, func(context.Context) (int, error) { return 1, nil }); err != nil {
		t.Fatal(err)
	}
	other := newRunner(t, s, idempotent.WithCodec(renamed{idempotent.JSON}))
	runs := 0
	_, err := idempotent.Run(ctx, other, "k", nil, func(context.Context) (int, error) { runs++; return 2, nil })
	if !errors.Is(err, idempotency.ErrCorruptRecord) || runs != 0 {
		t.Errorf("err %v, runs %d; want ErrCorruptRecord and no run", err, runs)
	}
}

type renamed struct{ idempotent.Codec }

func (renamed) Name() string { return "application/x-other" }

// A result that cannot be encoded was still produced: the caller gets it
// with an error, and the key stays locked so no retry runs twice.
func TestUnencodableResult(t *testing.T) {
	r := newRunner(t, nil)
	runs := 0
	fn := func(context.Context) (chan int, error) { runs++; return make(chan int), nil }
	if v, err := idempotent.Run(context.Background(), r, "k", nil, fn); v == nil || err == nil {
		t.Errorf("got %v %v, want the result and an error", v, err)
	}
	_, err := idempotent.Run(context.Background(), r, "k", nil, fn)
	if !errors.Is(err, idempotency.ErrOutcomeUnknown) || runs != 1 {
		t.Errorf("retry: %v after %d runs, want ErrOutcomeUnknown and one run", err, runs)
	}
}

// Under FailOpen a store outage runs the function unguarded; by default it
// fails closed.
func TestStoreDown(t *testing.T) {
	mem := memstore.New(memstore.Options{})
	defer mem.Close()
	down := behaviortest.NewOutageStore(mem)
	down.Outage(t)
	runs := 0
	fn := func(context.Context) (int, error) { runs++; return 1, nil }
	if _, err := idempotent.Run(context.Background(), newRunner(t, down), "k", nil, fn); !errors.Is(err, idempotency.ErrStoreUnavailable) || runs != 0 {
		t.Errorf("fail closed: %v, %d runs", err, runs)
	}
	p := idempotency.DefaultPolicy()
	p.FailOpen, p.KeyRequired = true, true
	if v, err := idempotent.Run(context.Background(), newRunner(t, down, idempotent.WithPolicy(&p)), "k", nil, fn); err != nil || v != 1 || runs != 1 {
		t.Errorf("fail open: %v %v, %d runs", v, err, runs)
	}
}

// The runner name separates key spaces; the input is bound to the key.
func TestNamesAndInputs(t *testing.T) {
	s := memstore.New(memstore.Options{})
	defer s.Close()
	ctx := context.Background()
	charge, _ := idempotent.NewRunner(s, "charge")
	receipt, _ := idempotent.NewRunner(s, "send-receipt")
	runs := 0
	fn := func(context.Context) (int, error) { runs++; return runs, nil }
	a, _ := idempotent.Run(ctx, charge, "order-1", "in", fn)
	b, _ := idempotent.Run(ctx, receipt, "order-1", "other input", fn)
	if a != 1 || b != 2 {
		t.Errorf("two operations with one key: %d %d, want 1 2", a, b)
	}
	_, err := idempotent.Run(ctx, charge, "order-1", "changed", fn)
	if !errors.Is(err, idempotency.ErrMismatch) || runs != 2 {
		t.Errorf("changed input: %v after %d runs, want ErrMismatch", err, runs)
	}
	if charge.StorageKey(ctx, "order-1") == receipt.StorageKey(ctx, "order-1") {
		t.Error("two operations share a storage key")
	}
}
