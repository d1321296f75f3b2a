// Package web serves the HTTP endpoints of Bitville APM's daemons (the
// agent, the pg-exporter, the push gateway) on a listener, with TLS and
// basic authentication from an optional web configuration file in the
// Prometheus exporter-toolkit's format
// (https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md),
// the file node_exporter and postgres_exporter take as --web.config.file.
//
// A daemon checks the file with CheckConfigFile before it opens anything
// else, then opens its HTTP listener with Listen, runs Serve in a goroutine
// and calls Shutdown when it stops.
package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	toolkit "github.com/prometheus/exporter-toolkit/web"
	"golang.org/x/crypto/bcrypt"
)

// ReadHeaderTimeout bounds how long a client may take to send its request
// headers, so that idle or slow connections cannot hold the server's
// goroutines and file descriptors.
const ReadHeaderTimeout = 10 * time.Second

// CheckConfigFile reports whether path is a valid web configuration file:
// strict YAML (unknown keys are errors), basic_auth_users values that are
// bcrypt hashes, and, when tls_server_config is present, a certificate and
// key that load. An empty path means plain HTTP without authentication and
// is valid.
func CheckConfigFile(path string) error {
	if path == "" {
		return nil
	}
	err := toolkit.Validate(path)
	if err == nil {
		return nil
	}
	var prefix *bcrypt.InvalidHashPrefixError
	var version bcrypt.HashVersionTooNewError
	var cost bcrypt.InvalidCostError
	if errors.Is(err, bcrypt.ErrHashTooShort) || errors.As(err, &prefix) || errors.As(err, &version) || errors.As(err, &cost) {
		err = fmt.Errorf("basic_auth_users: every password must be a bcrypt hash (htpasswd -nBC 10 USER): %w", err)
	}
	return fmt.Errorf("invalid web.config.file %s: %w", path, err)
}

// Server is one daemon's HTTP server. Serve and Shutdown may be called from
// different goroutines; Serve is called at most once.
type Server struct {
	ln         net.Listener
	srv        *http.Server
	configFile string
	log        *slog.Logger
}

// Listen checks configFile (see CheckConfigFile) and listens on the TCP
// address addr; the returned Server serves h there once Serve is called.
func Listen(addr, configFile string, h http.Handler, log *slog.Logger) (*Server, error) {
	if err := CheckConfigFile(configFile); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cannot listen on web.listen-address %s: %w", addr, err)
	}
	return New(ln, configFile, h, log), nil
}

// New returns a Server that serves h on ln, which it then owns. configFile
// is not checked here: check it with CheckConfigFile first.
func New(ln net.Listener, configFile string, h http.Handler, log *slog.Logger) *Server {
	return &Server{
		ln:         ln,
		srv:        &http.Server{Handler: h, ReadHeaderTimeout: ReadHeaderTimeout, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)},
		configFile: configFile,
		log:        log,
	}
}

// SetLimits bounds, beyond the headers' ReadHeaderTimeout, how long a
// client may take to send a whole request (read), how long a kept-alive
// connection may idle (idle) and the bytes of request headers; zero leaves
// a bound as net/http has it. Call it before Serve. A server that takes
// bodies from the network (the push gateway) needs them against clients
// that send slowly on purpose.
func (s *Server) SetLimits(read, idle time.Duration, maxHeaderBytes int) {
	s.srv.ReadTimeout = read
	s.srv.IdleTimeout = idle
	s.srv.MaxHeaderBytes = maxHeaderBytes
}

// Addr is the address the server listens on (with the port the system
// chose for ":0").
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve answers requests until Shutdown, then returns nil; any other return
// is an error the daemon cannot serve past. The web configuration file is
// read again for each new TLS connection and each request, as exporter-toolkit
// does: new certificates and passwords take effect without a restart, and a
// file broken while the daemon runs fails the handshakes or requests (500)
// rather than the daemon.
func (s *Server) Serve() error {
	flags := &toolkit.FlagConfig{WebConfigFile: &s.configFile}
	err := toolkit.Serve(s.ln, s.srv, flags, s.log)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting connections and waits, until ctx ends, for the
// requests in progress to finish (http.Server.Shutdown). It also closes the
// listener when Serve was never called.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if cerr := s.ln.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) && err == nil {
		err = cerr
	}
	return err
}
