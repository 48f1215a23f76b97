package stdhttp_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/middleware/stdhttp"
	"github.com/gopotency/gopotency/pkg/store/memstore"
)

func Example() {
	store := memstore.New(memstore.Options{})
	defer store.Close()
	idem, err := stdhttp.New(store)
	if err != nil {
		panic(err)
	}

	orders := 0
	mux := http.NewServeMux()
	mux.HandleFunc("POST /orders", func(w http.ResponseWriter, r *http.Request) {
		orders++
		w.Header().Set("Location", fmt.Sprintf("/orders/%d", orders))
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, "order %d created", orders)
	})
	handler := idem(mux)

	// A client retries the same request, say after a timeout.
	for range 2 {
		req := httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader(`{"item":"book"}`))
		req.Header.Set("Idempotency-Key", `"8e03978e-40d5-43e8-bc93-6894a57f9324"`)
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		fmt.Printf("%d %s replayed=%q: %s\n", rec.Code, rec.Header().Get("Location"), rec.Header().Get("Idempotent-Replayed"), rec.Body)
	}
	fmt.Println("orders created:", orders)
	// Output:
	// 201 /orders/1 replayed="": order 1 created
	// 201 /orders/1 replayed="true": order 1 created
	// orders created: 1
}

func ExampleWithPolicyFunc() {
	store := memstore.New(memstore.Options{})
	defer store.Close()

	// Payments must carry a key; other POSTs may; everything else is not
	// guarded at all.
	payments := idempotency.DefaultPolicy()
	payments.KeyRequired = true
	others := idempotency.DefaultPolicy()
	idem, err := stdhttp.New(store, stdhttp.WithPolicyFunc(func(r *http.Request) *idempotency.Policy {
		if strings.HasPrefix(r.URL.Path, "/payments/") {
			return &payments
		}
		return &others
	}))
	if err != nil {
		panic(err)
	}
	handler := idem(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
	}))

	req := httptest.NewRequest(http.MethodPost, "/payments/charge", strings.NewReader(`{"amount":100}`))
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, req)
	fmt.Println(rec.Code, rec.Header().Get("Content-Type"))
	fmt.Println(rec.Body)
	// Output:
	// 400 application/problem+json
	// {"status":400,"type":"https://gopotency.dev/problems/key-missing","title":"Idempotency-Key header required","detail":"This endpoint requires an Idempotency-Key header; send a unique value per logical operation."}
}
