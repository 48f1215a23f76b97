package ginmw_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/gopotency/gopotency/pkg/middleware/ginmw"
	"github.com/gopotency/gopotency/pkg/store/memstore"
)

func Example() {
	gin.SetMode(gin.ReleaseMode)
	store := memstore.New(memstore.Options{})
	defer store.Close()
	idem, err := ginmw.New(store)
	if err != nil {
		panic(err)
	}

	orders := 0
	r := gin.New()
	api := r.Group("/api", idem) // guard one group, or r.Use(idem) for all
	api.POST("/orders", func(c *gin.Context) {
		orders++
		c.Header("Location", fmt.Sprintf("/api/orders/%d", orders))
		c.JSON(http.StatusCreated, gin.H{"order": orders})
	})

	for range 2 {
		req := httptest.NewRequest(http.MethodPost, "/api/orders", strings.NewReader(`{"item":"book"}`))
		req.Header.Set("Idempotency-Key", "order-book-1")
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, req)
		fmt.Printf("%d %s replayed=%q: %s\n", rec.Code, rec.Header().Get("Location"), rec.Header().Get("Idempotent-Replayed"), rec.Body)
	}
	fmt.Println("orders created:", orders)
	// Output:
	// 201 /api/orders/1 replayed="": {"order":1}
	// 201 /api/orders/1 replayed="true": {"order":1}
	// orders created: 1
}
