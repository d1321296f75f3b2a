package stack

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// NginxConfig describes an nginx that serves a PHP front controller.
type NginxConfig struct {
	Dir           string // config, logs, pid and temp files (created)
	Root          string // document root; every request not naming an existing file goes to Root/index.php
	FastCGISocket string // php-fpm's unix socket
	Port          int    // TCP port on 127.0.0.1; 0 picks a free one
	StatusPath    string // passed to php-fpm as-is for its status page; default "/status"
	Binary        string // default: nginx on PATH or /usr/sbin
}

// Nginx is a running nginx.
type Nginx struct {
	URL       string // http://127.0.0.1:port
	Port      int
	ErrorLog  string
	AccessLog string

	proc *process
}

// StartNginx writes an nginx configuration into c.Dir and starts nginx in
// the foreground. Requests for existing files under Root are served as
// files; everything else, and any *.php path, runs Root/index.php (a front
// controller) with the original REQUEST_URI; StatusPath (and /ping) go to
// php-fpm's status page. It returns once the port accepts connections; ctx
// bounds only that wait. When the port was picked here and another process
// took it meanwhile, it retries with a new one.
func StartNginx(ctx context.Context, c NginxConfig) (*Nginx, error) {
	if c.Dir == "" || c.Root == "" || c.FastCGISocket == "" {
		return nil, fmt.Errorf("cannot start nginx: Dir, Root and FastCGISocket are required")
	}
	if c.StatusPath == "" {
		c.StatusPath = "/status"
	}
	if c.Binary == "" {
		bin, err := findBinary("nginx", []string{"/usr/sbin", "/usr/local/sbin"}, "nginx")
		if err != nil {
			return nil, fmt.Errorf("cannot start nginx: %w", err)
		}
		c.Binary = bin
	}
	dir, err := filepath.Abs(c.Dir)
	if err != nil {
		return nil, fmt.Errorf("cannot start nginx: %w", err)
	}
	root, err := filepath.Abs(c.Root)
	if err != nil {
		return nil, fmt.Errorf("cannot start nginx: %w", err)
	}
	for _, p := range []string{dir, root, c.FastCGISocket, c.StatusPath} {
		if strings.ContainsAny(p, " \t\n;{}'\"$#\\") {
			return nil, fmt.Errorf("cannot start nginx: %q contains a character this configuration does not quote", p)
		}
	}
	if st, err := os.Stat(filepath.Join(root, "index.php")); err != nil || st.IsDir() {
		return nil, fmt.Errorf("cannot start nginx: no front controller %s/index.php", root)
	}
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		return nil, fmt.Errorf("cannot start nginx: %w", err)
	}
	var n *Nginx
	err = onFreePort(c.Port, "nginx", "Address already in use", func(port int) error {
		var err error
		n, err = startNginxOnce(ctx, c, dir, root, port)
		return err
	})
	if err != nil {
		return nil, err
	}
	return n, nil
}

func startNginxOnce(ctx context.Context, c NginxConfig, dir, root string, port int) (*Nginx, error) {
	n := &Nginx{
		URL:       fmt.Sprintf("http://127.0.0.1:%d", port),
		Port:      port,
		ErrorLog:  filepath.Join(dir, "error.log"),
		AccessLog: filepath.Join(dir, "access.log"),
	}
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(nginxConfig(c, dir, root, port, n)), 0o644); err != nil {
		return nil, fmt.Errorf("cannot start nginx: %w", err)
	}
	// -e: nginx 1.22 opens its compiled-in error log before it reads the
	// configuration unless told otherwise.
	cmd := exec.Command(c.Binary, "-e", n.ErrorLog, "-p", dir, "-c", confPath)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"}
	p, err := startProcess("nginx", cmd, n.ErrorLog)
	if err != nil {
		return nil, err
	}
	n.proc = p
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := p.waitReady(ctx, n.ErrorLog, func() error { return dialTCP(addr) }); err != nil {
		_ = p.stop(syscall.SIGTERM, 5*time.Second)
		return nil, err
	}
	return n, nil
}

// PID returns the nginx master's process id.
func (n *Nginx) PID() int { return n.proc.cmd.Process.Pid }

// Stop ends nginx (SIGQUIT: graceful, up to 5 seconds; then SIGKILL to
// its process group).
func (n *Nginx) Stop() error {
	if n == nil || n.proc == nil {
		return nil
	}
	return n.proc.stop(syscall.SIGQUIT, 5*time.Second)
}

func nginxConfig(c NginxConfig, dir, root string, port int, n *Nginx) string {
	user := ""
	if os.Geteuid() == 0 {
		user = "user root root;\n"
	}
	tmp := filepath.Join(dir, "tmp")
	// The FastCGI parameters are written out here rather than included
	// from /etc/nginx so the configuration does not depend on the host.
	params := `
            fastcgi_param QUERY_STRING      $query_string;
            fastcgi_param REQUEST_METHOD    $request_method;
            fastcgi_param CONTENT_TYPE      $content_type;
            fastcgi_param CONTENT_LENGTH    $content_length;
            fastcgi_param REQUEST_URI       $request_uri;
            fastcgi_param DOCUMENT_URI      $document_uri;
            fastcgi_param DOCUMENT_ROOT     $document_root;
            fastcgi_param SERVER_PROTOCOL   $server_protocol;
            fastcgi_param REQUEST_SCHEME    $scheme;
            fastcgi_param GATEWAY_INTERFACE CGI/1.1;
            fastcgi_param SERVER_SOFTWARE   nginx/$nginx_version;
            fastcgi_param REMOTE_ADDR       $remote_addr;
            fastcgi_param REMOTE_PORT       $remote_port;
            fastcgi_param SERVER_ADDR       $server_addr;
            fastcgi_param SERVER_PORT       $server_port;
            fastcgi_param SERVER_NAME       $server_name;
            fastcgi_param HTTP_PROXY        "";
            fastcgi_pass unix:` + c.FastCGISocket + `;`
	return fmt.Sprintf(`# written by bitville-apm internal/stack
%sdaemon off;
master_process on;
worker_processes 1;
pid %s;
error_log %s info;

events {
    worker_connections 512;
}

http {
    access_log %s;
    client_body_temp_path %s/client_body;
    proxy_temp_path %s/proxy;
    fastcgi_temp_path %s/fastcgi;
    uwsgi_temp_path %s/uwsgi;
    scgi_temp_path %s/scgi;
    default_type application/octet-stream;
    fastcgi_read_timeout 300s;

    server {
        listen 127.0.0.1:%d;
        server_name localhost;
        root %s;

        location = %s {
            %s
            fastcgi_param SCRIPT_NAME     %s;
            fastcgi_param SCRIPT_FILENAME %s;
        }
        location = /ping {
            %s
            fastcgi_param SCRIPT_NAME     /ping;
            fastcgi_param SCRIPT_FILENAME /ping;
        }
        location / {
            try_files $uri @php;
        }
        location ~ \.php$ {
            try_files /nonexistent @php;
        }
        location @php {
            %s
            fastcgi_param SCRIPT_NAME     /index.php;
            fastcgi_param SCRIPT_FILENAME $document_root/index.php;
        }
    }
}
`, user, filepath.Join(dir, "nginx.pid"), n.ErrorLog, n.AccessLog, tmp, tmp, tmp, tmp, tmp,
		port, root, c.StatusPath, params, c.StatusPath, c.StatusPath, params, params)
}
