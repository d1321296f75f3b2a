package pgexporter

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// server is one configured DSN: a single connection, opened on first use
// and again after it broke, and used by one query at a time, so the
// exporter never holds more than one connection per server.
type server struct {
	cfg     *pgx.ConnConfig
	label   string // host:port/database, without credentials
	timeout time.Duration

	sem     chan struct{} // one query at a time; waiting honours the caller's deadline
	conn    *pgx.Conn
	version int // server_version_num of the current connection
}

func newServer(dsn string, statementTimeout time.Duration) (*server, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx's message may quote the DSN, password included: keep it out.
		return nil, fmt.Errorf("cannot parse a pg.dsn: %s", redactedParseError(err))
	}
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	ms := strconv.FormatInt(statementTimeout.Milliseconds(), 10)
	cfg.RuntimeParams["statement_timeout"] = ms
	// Below the statement timeout, so a lock wait fails as such (55P03)
	// rather than as a cancelled statement.
	cfg.RuntimeParams["lock_timeout"] = strconv.FormatInt(max(statementTimeout.Milliseconds()/2, 1), 10)
	cfg.RuntimeParams["idle_in_transaction_session_timeout"] = ms
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "bitville-apm pg-exporter"
	}
	if cfg.ConnectTimeout == 0 || cfg.ConnectTimeout > statementTimeout {
		cfg.ConnectTimeout = statementTimeout
	}
	// The simple protocol: no prepared statements left on the server, and
	// one round trip per query.
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	return &server{cfg: cfg, label: fmt.Sprintf("%s:%d/%s", cfg.Host, cfg.Port, cfg.Database), timeout: statementTimeout, sem: make(chan struct{}, 1)}, nil
}

// redactedParseError is pgx's parse error without the DSN it quotes
// ("cannot parse `DSN`: reason" → "reason").
func redactedParseError(err error) string {
	s := err.Error()
	first := strings.IndexByte(s, '`')
	if first < 0 {
		return s
	}
	last := strings.LastIndexByte(s, '`')
	if last <= first {
		return "invalid DSN"
	}
	return strings.TrimLeft(s[last+1:], ": ")
}

// isServerError says err is an error the server reported for a query
// (the connection is still usable), not a network or protocol failure.
func isServerError(err error) bool {
	// Including 57014 (query_canceled) from statement_timeout: the server
	// cancelled the statement, the connection is fine. A cancel from our
	// own deadline is caught by the ctx check in with().
	var pe *pgconn.PgError
	return errors.As(err, &pe)
}

// with runs f on the server's connection, connecting first when needed;
// a connection that fails a query is closed, so the next use reconnects.
func (s *server) with(ctx context.Context, f func(ctx context.Context, c *pgx.Conn, version int) error) error {
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("%s is busy with another scrape: %w", s.label, ctx.Err())
	}
	defer func() { <-s.sem }()
	if s.conn == nil || s.conn.IsClosed() {
		c, err := pgx.ConnectConfig(ctx, s.cfg)
		if err != nil {
			return &connectError{fmt.Errorf("cannot connect to %s: %w", s.label, err)}
		}
		var v string
		if err := c.QueryRow(ctx, "SHOW server_version_num").Scan(&v); err != nil {
			c.Close(context.Background())
			return &connectError{fmt.Errorf("cannot read the version of %s: %w", s.label, err)}
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			c.Close(context.Background())
			return fmt.Errorf("cannot parse server_version_num %q of %s", v, s.label)
		}
		s.conn, s.version = c, n
	}
	err := f(ctx, s.conn, s.version)
	if err != nil && (ctx.Err() != nil || s.conn.IsClosed() || !isServerError(err)) {
		// A timeout or a broken connection: start over next time rather
		// than reuse a connection in an unknown state.
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		s.conn.Close(closeCtx)
		cancel()
		s.conn = nil
	}
	return err
}

// close closes the connection, if any.
func (s *server) close() {
	s.sem <- struct{}{}
	defer func() { <-s.sem }()
	if s.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		s.conn.Close(ctx)
		cancel()
		s.conn = nil
	}
}

// connectError is a failure to connect (the server is down, refuses the
// role, or does not answer): bitville_pg_up is 0.
type connectError struct{ err error }

func (e *connectError) Error() string { return e.err.Error() }
func (e *connectError) Unwrap() error { return e.err }
