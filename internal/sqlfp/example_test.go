package sqlfp_test

import (
	"fmt"

	"github.com/bitville/bitville-apm/internal/sqlfp"
)

func Example() {
	fromPHP := sqlfp.Fingerprint("SELECT * FROM orders WHERE id = 42 /*endpoint='GET%20%2Forders%2F%7Bid%7D'*/")
	fromPG := sqlfp.Fingerprint("SELECT * FROM orders WHERE id = $1") // as pg_stat_statements shows it
	fmt.Println(fromPHP.Fingerprint == fromPG.Fingerprint)
	fmt.Println(fromPHP.Normalized)

	cut := sqlfp.Fingerprint("SELECT * FROM orders WHERE id IN (1, 2, 3") // truncated by the agent
	fmt.Println(cut.Normalized, cut.Fallback)

	cache := sqlfp.NewCache(10000)
	r := cache.Lookup([]byte("SELECT * FROM orders WHERE id = 7"))
	fmt.Println(r.Fingerprint == fromPG.Fingerprint)
	// Output:
	// true
	// SELECT * FROM orders WHERE id = $1
	// SELECT * FROM orders WHERE id IN ($1 true
	// true
}
