package compose

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

// TestFPMConfig runs php-fpm -t on the pool files (the paths php-fpm
// opens moved to a temporary directory).
func TestFPMConfig(t *testing.T) {
	fpm := ""
	for _, name := range []string{"php-fpm8.2", "php-fpm"} {
		if p, err := exec.LookPath(name); err == nil {
			fpm = p
			break
		}
		if _, err := os.Stat("/usr/sbin/" + name); err == nil {
			fpm = "/usr/sbin/" + name
			break
		}
	}
	if fpm == "" {
		t.Skip("php-fpm is not installed (Debian: php8.2-fpm, or scripts/deps.sh)")
	}
	tmp := t.TempDir()
	pool := filepath.Join(tmp, "php-fpm.d")
	if err := os.Mkdir(pool, 0o755); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(composeDir(t), "shop", "php-fpm.d")
	files, _ := filepath.Glob(filepath.Join(src, "*.conf"))
	if len(files) == 0 {
		t.Fatalf("no *.conf in %s", src)
	}
	moved := regexp.MustCompile(`(?m)^(listen|slowlog|error_log)\s*=\s*(\S+)\s*$`)
	for _, f := range files {
		conf := moved.ReplaceAllStringFunc(string(readFile(t, f)), func(line string) string {
			m := moved.FindStringSubmatch(line)
			return m[1] + " = " + filepath.Join(tmp, m[1])
		})
		if err := os.WriteFile(filepath.Join(pool, filepath.Base(f)), []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	main := filepath.Join(tmp, "php-fpm.conf")
	if err := os.WriteFile(main, fmt.Appendf(nil, "[global]\npid = %s/fpm.pid\ninclude = %s/*.conf\n", tmp, pool), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(fpm, "-t", "-y", main).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("test is successful")) {
		t.Errorf("php-fpm -t on compose/shop/php-fpm.d: %v\n%s", err, out)
	}
}
