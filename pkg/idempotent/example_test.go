package idempotent_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/idempotent"
	"github.com/gopotency/gopotency/pkg/store/memstore"
)

type ChargeRequest struct {
	OrderID string `json:"order_id"`
	Cents   int    `json:"cents"`
}

type Receipt struct {
	ChargeID string `json:"charge_id"`
	Cents    int    `json:"cents"`
}

// Example wraps a function so a retried charge never charges twice, the
// way Powertools' makeIdempotent does.
func Example() {
	store := memstore.New(memstore.Options{}) // or redisstore, sqlstore, gormstore
	defer store.Close()
	runner, err := idempotent.NewRunner(store, "charge")
	if err != nil {
		panic(err)
	}

	charges := 0
	charge := idempotent.New(runner, func(ctx context.Context, req ChargeRequest) (Receipt, error) {
		charges++ // the side effect: call the payment provider
		return Receipt{ChargeID: fmt.Sprintf("ch_%d", charges), Cents: req.Cents}, nil
	})

	ctx := context.Background()
	req := ChargeRequest{OrderID: "order-42", Cents: 1250}
	first, _ := charge.Do(ctx, req.OrderID, req)
	retry, _ := charge.Do(ctx, req.OrderID, req) // a retry: the stored receipt
	fmt.Println(first, retry, "charges:", charges)

	_, err = charge.Do(ctx, req.OrderID, ChargeRequest{OrderID: "order-42", Cents: 9999})
	fmt.Println(errors.Is(err, idempotency.ErrMismatch))
	// Output:
	// {ch_1 1250} {ch_1 1250} charges: 1
	// true
}

// ExampleRun guards a closure: the input passed to Run is bound to the
// key. A timeout talking to the provider is uncertain, so the key stays
// locked instead of letting a retry charge again.
func ExampleRun() {
	store := memstore.New(memstore.Options{})
	defer store.Close()
	runner, err := idempotent.NewRunner(store, "refund")
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	calls := 0
	refund := func(ctx context.Context) (string, error) {
		calls++
		return "", idempotent.Uncertain(errors.New("payment provider: read timeout"))
	}
	_, err = idempotent.Run(ctx, runner, "refund-7", map[string]int{"cents": 500}, refund)
	fmt.Println(err)
	_, err = idempotent.Run(ctx, runner, "refund-7", map[string]int{"cents": 500}, refund)
	var refused *idempotent.Error
	fmt.Println("retry refused:", errors.As(err, &refused), "calls:", calls)
	// Output:
	// payment provider: read timeout
	// retry refused: true calls: 1
}
