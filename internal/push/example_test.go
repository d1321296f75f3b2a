package push_test

import (
	"fmt"

	"github.com/bitville/bitville-apm/internal/push"
)

func ExampleParseBatchID() {
	b, err := push.ParseBatchID("9f86d081884c7d65-42")
	fmt.Println(b.Boot, b.Seq, err)
	_, err = push.ParseBatchID("9f86d081884c7d65-042")
	fmt.Println(err)
	// Output:
	// 9f86d081884c7d65 42 <nil>
	// invalid batch id "9f86d081884c7d65-042": the sequence number is not a decimal from 1 to 2^63
}
