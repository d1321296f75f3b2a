package throttle_test

import (
	"fmt"
	"time"

	"github.com/bitville/bitville-apm/internal/throttle"
)

func Example() {
	logs := throttle.New(time.Minute)
	for i := 0; i < 5; i++ {
		if n, ok := logs.Allow(); ok {
			fmt.Println("log, suppressed since the last:", n)
		}
	}
	// Output:
	// log, suppressed since the last: 0
}
