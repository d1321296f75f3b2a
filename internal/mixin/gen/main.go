// Command gen writes the generated dashboards (dashboards/*.json) and rule
// files (alerts/*.rules.yml) from internal/mixin. Run it from the
// repository root: `make generate` or `go run ./internal/mixin/gen`.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/bitville/bitville-apm/internal/mixin"
)

func main() {
	root := flag.String("root", ".", "the repository root")
	flag.Parse()
	files, err := mixin.Files(mixin.DefaultConfig())
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
	for _, f := range files {
		path := filepath.Join(*root, f.Path)
		if err := os.WriteFile(path, f.Data, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "gen:", err)
			os.Exit(1)
		}
		fmt.Println("wrote", f.Path)
	}
}
