package fibermw_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/gofiber/fiber/v3"

	"github.com/gopotency/gopotency/pkg/middleware/fibermw"
	"github.com/gopotency/gopotency/pkg/store/memstore"
)

func Example() {
	store := memstore.New(memstore.Options{})
	defer store.Close()
	idem, err := fibermw.New(store)
	if err != nil {
		panic(err)
	}

	orders := 0
	app := fiber.New()
	app.Use(idem) // or per route: app.Post("/orders", h, idem)
	app.Post("/orders", func(c fiber.Ctx) error {
		orders++
		c.Location(fmt.Sprintf("/orders/%d", orders))
		return c.Status(http.StatusCreated).JSON(fiber.Map{"order": orders})
	})

	for range 2 {
		req := httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader(`{"item":"book"}`))
		req.Header.Set("Idempotency-Key", "order-book-1")
		resp, err := app.Test(req)
		if err != nil {
			panic(err)
		}
		body, _ := io.ReadAll(resp.Body)
		fmt.Printf("%d %s replayed=%q: %s\n", resp.StatusCode, resp.Header.Get("Location"), resp.Header.Get("Idempotent-Replayed"), body)
	}
	fmt.Println("orders created:", orders)
	// Output:
	// 201 /orders/1 replayed="": {"order":1}
	// 201 /orders/1 replayed="true": {"order":1}
	// orders created: 1
}
