package echomw_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/gopotency/gopotency/pkg/middleware/echomw"
	"github.com/gopotency/gopotency/pkg/store/memstore"
)

func Example() {
	store := memstore.New(memstore.Options{})
	defer store.Close()
	idem, err := echomw.New(store)
	if err != nil {
		panic(err)
	}

	orders := 0
	e := echo.New()
	e.POST("/orders", func(c echo.Context) error {
		orders++
		c.Response().Header().Set("Location", fmt.Sprintf("/orders/%d", orders))
		return c.JSON(http.StatusCreated, map[string]int{"order": orders})
	}, idem) // per route, or e.Use(idem) for all

	for range 2 {
		req := httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader(`{"item":"book"}`))
		req.Header.Set("Idempotency-Key", "order-book-1")
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		fmt.Printf("%d %s replayed=%q: %s", rec.Code, rec.Header().Get("Location"), rec.Header().Get("Idempotent-Replayed"), rec.Body)
	}
	fmt.Println("orders created:", orders)
	// Output:
	// 201 /orders/1 replayed="": {"order":1}
	// 201 /orders/1 replayed="true": {"order":1}
	// orders created: 1
}
