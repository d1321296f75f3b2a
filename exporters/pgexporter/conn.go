package pgexporter

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// server is one configured DSN and its connections: at most size of
// them, each opened on first use and again after it broke, each used by
// one query at a time. A scrape spreads its collectors over them; the
// background sampler has a server of its own with one connection.
type server struct {
	cfg     *pgx.ConnConfig
	label   string // host:port/database, without credentials
	timeout time.Duration

	// slots holds the idle connection slots; taking one (waiting within
	// the caller's deadline) is the right to use its connection.
	slots chan *slot
	size  int

	// pids are the backend pids of the open connections, readable while
	// they are in use (the sampler leaves the scrapes' sessions out).
	pidsMu sync.Mutex
	pids   map[*slot]uint32
}

// slot is one connection of a server, nil until first used or after it
// broke.
type slot struct {
	conn    *pgx.Conn
	version int // server_version_num of conn
}

func newServer(dsn string, statementTimeout time.Duration, size int) (*server, error) {
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
	// Each query is prepared once per connection and its plan kept: the
	// exporter runs the same few queries at every scrape, and planning
	// them again (the views over pg_stat_activity, pg_locks) cost more
	// than executing them. Prepared statements live and die with the
	// exporter's own sessions; a failed one is dropped from the cache and
	// prepared again (pgx).
	cfg.DefaultQueryExecMode = pgx.QueryExecModeCacheStatement
	s := &server{cfg: cfg, label: fmt.Sprintf("%s:%d/%s", cfg.Host, cfg.Port, cfg.Database), timeout: statementTimeout,
		slots: make(chan *slot, max(size, 1)), size: max(size, 1), pids: map[*slot]uint32{}}
	for range s.size {
		s.slots <- &slot{}
	}
	return s, nil
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

// with runs f on one of the server's connections (see take and run).
func (s *server) with(ctx context.Context, f func(ctx context.Context, c *pgx.Conn, version int) error) error {
	sl, err := s.take(ctx)
	if err != nil {
		return err
	}
	defer s.put(sl)
	return s.run(ctx, sl, f)
}

// take waits, within ctx, for a connection slot of the server; put gives
// it back.
func (s *server) take(ctx context.Context) (*slot, error) {
	select {
	case sl := <-s.slots:
		return sl, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: every connection is busy with another scrape: %w", s.label, ctx.Err())
	}
}

func (s *server) put(sl *slot) { s.slots <- sl }

// run runs f on the slot's connection, connecting first when needed; a
// connection that fails a query other than by a server error is closed,
// so the next use reconnects.
func (s *server) run(ctx context.Context, sl *slot, f func(ctx context.Context, c *pgx.Conn, version int) error) error {
	if err := s.connect(ctx, sl); err != nil {
		return err
	}
	err := f(ctx, sl.conn, sl.version)
	if err != nil && (ctx.Err() != nil || sl.conn.IsClosed() || !isServerError(err)) {
		// A timeout or a broken connection: start over next time rather
		// than reuse a connection in an unknown state.
		s.drop(sl)
	}
	return err
}

// connect opens the slot's connection unless it is open; a failure is a
// *connectError.
func (s *server) connect(ctx context.Context, sl *slot) error {
	if sl.conn != nil && !sl.conn.IsClosed() {
		return nil
	}
	c, err := pgx.ConnectConfig(ctx, s.cfg)
	if err != nil {
		return &connectError{fmt.Errorf("cannot connect to %s: %w", s.label, err)}
	}
	var v string
	if err := c.QueryRow(ctx, "SHOW server_version_num", pgx.QueryExecModeSimpleProtocol).Scan(&v); err != nil {
		c.Close(context.Background())
		return &connectError{fmt.Errorf("cannot read the version of %s: %w", s.label, err)}
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		c.Close(context.Background())
		return &connectError{fmt.Errorf("cannot parse server_version_num %q of %s", v, s.label)}
	}
	sl.conn, sl.version = c, n
	s.pidsMu.Lock()
	s.pids[sl] = c.PgConn().PID()
	s.pidsMu.Unlock()
	return nil
}

// backendPIDs returns the backend pids of the server's open connections.
func (s *server) backendPIDs() []uint32 {
	s.pidsMu.Lock()
	defer s.pidsMu.Unlock()
	out := make([]uint32, 0, len(s.pids))
	for _, p := range s.pids {
		out = append(out, p)
	}
	return out
}

// drop closes the slot's connection.
func (s *server) drop(sl *slot) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	sl.conn.Close(ctx)
	cancel()
	sl.conn = nil
	s.pidsMu.Lock()
	delete(s.pids, sl)
	s.pidsMu.Unlock()
}

// close closes the connections, waiting for those in use.
func (s *server) close() {
	for range s.size {
		sl := <-s.slots
		if sl.conn != nil {
			s.drop(sl)
		}
		defer func() { s.slots <- sl }()
	}
}

// connectError is a failure to connect (the server is down, refuses the
// role, or does not answer): bitville_pg_up is 0.
type connectError struct{ err error }

func (e *connectError) Error() string { return e.err.Error() }
func (e *connectError) Unwrap() error { return e.err }
