package stack_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/bitville/bitville-apm/internal/stack"
)

// The example shop of php/examples on PostgreSQL, php-fpm and nginx,
// without the APM agent.
func ExampleStartShop() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "bitville-apm-example-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)

	shop, err := stack.StartShop(ctx, stack.ShopConfig{Dir: dir, Children: 2})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer shop.Stop()

	resp, err := http.Get(shop.URL + "/orders/42")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Print(resp.StatusCode, " ", string(body))
	// Output:
	// 200 {"id":42,"status":"new","customer":{"name":"Customer 43","email":"customer43@example.com"},"items":[{"sku":"SKU-00108","name":"Product 108","qty":2,"total_cents":9992},{"sku":"SKU-00121","name":"Product 121","qty":3,"total_cents":16431},{"sku":"SKU-00134","name":"Product 134","qty":1,"total_cents":5958}],"net_cents":32381,"tax_cents":6476,"total_cents":38857}
}
