package compose

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

// TestNginxConfig runs nginx -t on nginx/shop.conf inside a minimal main
// configuration (the image's nginx.conf includes conf.d/*.conf in http).
func TestNginxConfig(t *testing.T) {
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		if _, err := os.Stat("/usr/sbin/nginx"); err != nil {
			t.Skip("nginx is not installed (Debian: nginx, or scripts/deps.sh)")
		}
		nginx = "/usr/sbin/nginx"
	}
	site := filepath.Join(composeDir(t), "nginx", "shop.conf")
	for _, m := range regexp.MustCompile(`(?m)^\s*include\s+([^;\s]+);`).FindAllStringSubmatch(string(readFile(t, site)), -1) {
		if _, err := os.Stat(m[1]); err != nil {
			t.Skipf("nginx/shop.conf includes %s, which this machine's nginx lacks", m[1])
		}
	}
	tmp := t.TempDir()
	main := filepath.Join(tmp, "nginx.conf")
	conf := fmt.Sprintf(`pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events {}
http {
    access_log %[1]s/access.log;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[2]s;
}
`, tmp, site)
	if err := os.WriteFile(main, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(nginx, "-t", "-p", tmp, "-e", filepath.Join(tmp, "error.log"), "-c", main).CombinedOutput()
	if err != nil {
		t.Errorf("nginx -t on compose/nginx/shop.conf: %v\n%s", err, out)
	}
}
