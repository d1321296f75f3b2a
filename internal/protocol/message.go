// Package protocol defines the wire protocol (versions 1 and 2) between the PHP agent and the
// bitville-apm agent daemon: one JSON object per unix datagram, of type
// start, progress or end. docs/protocol.md is the human-readable contract and
// testdata/protocol/ holds golden messages that both sides test against.
//
// Decoding is strict about what the daemon relies on (types, units, ranges,
// list sizes) and lenient about what it does not know (unknown fields are
// ignored so that newer PHP agents can talk to older daemons).
package protocol

// Version is the protocol version the PHP agent sends. Version 2 differs
// from MinVersion only in units: its durations and times are integers of
// microseconds where version 1 has seconds as JSON numbers with fractions
// (integers cost a PHP process a fraction of what formatting a float does).
// Both decode to the same Message, in seconds.
const Version = 2

// MinVersion is the oldest version this package accepts: PHP agents not
// yet upgraded keep working with a newer daemon.
const MinVersion = 1

// MaxDatagramSize is the largest datagram the PHP agent may send. Larger
// datagrams are rejected whole with reason ReasonTooLarge.
const MaxDatagramSize = 64 * 1024

// Limits on sizes and values. A message that exceeds one is rejected (not
// clipped), so that a broken or hostile sender cannot make the daemon hold or
// aggregate absurd data. The PHP agent truncates before it sends, so a
// well-behaved sender never reaches them.
const (
	MaxIDLen        = 64
	MaxProjectLen   = 64
	MaxHostLen      = 255
	MaxPoolLen      = 64
	MaxSAPILen      = 32
	MaxCIDLen       = 128
	MaxMethodLen    = 16
	MaxURILen       = 2048
	MaxEndpointLen  = 256
	MaxSQLTextLen   = 8192
	MaxFunctionLen  = 512
	MaxStackFrames  = 128
	MaxCollapsedLen = 8192
	MaxErrorTypeLen = 128
	MaxErrorMsgLen  = 2048
	MaxErrorFileLen = 1024
	MaxProfilerLen  = 16
	MaxTruncatedLen = 32
	MaxSQL          = 500
	MaxFunctions    = 500
	MaxStacks       = 200
	MaxWall         = 500 // entries of wall_fn
	MaxErrors       = 50
	MaxTruncated    = 16
	MaxSites        = 200            // entries of sites: statements past them get no site
	MaxSiteFrames   = 8              // frames of one site
	MaxSiteFrameLen = 1024           // one frame, "file:line function"
	TraceIDLen      = 32             // a W3C trace id: 32 lowercase hex characters
	MaxDurationSec  = 30 * 24 * 3600 // a CLI job may run for days, not for longer than a month
	MaxMemoryBytes  = 1 << 40        // 1 TiB
	MaxRows         = 1 << 53        // exactly representable in JSON numbers
	MaxCount        = 1 << 31        // samples, calls, drops
	MinTimestamp    = 946684800      // 2000-01-01T00:00:00Z
	MaxTimestamp    = 4102444800     // 2100-01-01T00:00:00Z
	MaxPeriodSec    = 60.0
	MaxStatus       = 999
	MaxPID          = 1<<31 - 1
	MaxSequence     = 1 << 31
	MaxExitCode     = 255
	MinExitCode     = -255
	MaxLine         = 1 << 31
)

// Type is the kind of a message.
type Type uint8

// Message types. TypeUnknown is never returned for a decoded message; it
// labels invalid datagrams whose type could not be read.
const (
	TypeUnknown Type = iota
	TypeStart
	TypeProgress
	TypeEnd
)

// String returns the wire name of t, or "unknown".
func (t Type) String() string {
	switch t {
	case TypeStart:
		return "start"
	case TypeProgress:
		return "progress"
	case TypeEnd:
		return "end"
	}
	return "unknown"
}

// SQL is one statement a request ran.
type SQL struct {
	Query    string  // statement text as sent (redacted by the PHP agent, maybe truncated)
	Duration float64 // seconds
	Rows     int64   // rows affected or returned; -1 when unknown
	Error    bool    // the statement failed
	Cut      bool    // the PHP agent truncated Query
	Site     int     // index into Message.Sites of the code that ran it; -1 when unknown
}

// Function is one function of a request's sampling profile.
type Function struct {
	Name      string  // "Class::method" or "function"
	Self      float64 // seconds spent in the function itself
	Inclusive float64 // seconds with the functions it called
	Calls     int64   // calls when the profiler counts them (xhprof); 0 when unknown
}

// WallEntry is one place a request's worker spent wall time, by the
// real-time sampling clock: a blocking call and the user function that made
// it, or a user function and its parent.
type WallEntry struct {
	Function string  // the call ("session_start", "Redis::get", "->get") or the leaf user function
	Caller   string  // the user function that made the call, or the leaf's parent; "" for top-level code
	Seconds  float64 // wall seconds
}

// Stack is one collapsed stack ("outer;inner;innermost") with its samples.
type Stack struct {
	Frames  string
	Samples int64
}

// Error is one PHP error, warning or uncaught exception of a request.
type Error struct {
	Type    string // "E_WARNING", "E_ERROR", exception class, …
	Message string
	File    string
	Line    int64
}

// Message is one decoded datagram. Fields that a type does not carry are
// zero. A Decoder reuses the slices of the Message it decodes into, so a
// caller that keeps parts of it past the next Decode must copy them.
type Message struct {
	Type    Type
	ID      string  // request id, unique per request on the host
	PID     int     // worker process id
	Project string  // project the request belongs to
	TS      float64 // unix seconds when the message was made
	Host    string  // optional
	Pool    string  // optional php-fpm pool name
	SAPI    string  // optional: "fpm-fcgi", "cli", …
	Dropped int64   // messages this worker failed to send since its last successful send

	// start and end; endpoint also in progress.
	CID      string  // correlation id
	TraceID  string  // W3C trace id (32 lowercase hex) when the request came with a traceparent
	Method   string  // HTTP method, or "CLI"
	URI      string  // path without query string, or the script for CLI
	Endpoint string  // route pattern or collapsed URI
	Started  float64 // unix seconds when the request started

	// progress
	Elapsed  float64  // seconds since Started
	Stack    []string // current stack, outermost frame first
	Memory   int64    // current memory usage in bytes, 0 when not sent
	CPU      float64  // CPU seconds so far, 0 when not sent
	Sequence int64    // progress message number within the request

	// end
	Status        int  // HTTP status; 0 for CLI or unknown
	Exit          int  // CLI exit code, valid when HasExit
	HasExit       bool //
	Wall          float64
	CPUUser       float64
	CPUSys        float64
	MemPeak       int64
	SQL           []SQL
	SQLDropped    int64
	Sites         [][]string // call sites of the statements: each the first application frames, innermost first, "file:line function"
	Forced        bool       // the request carried the profile header (forced profile and raw trace)
	Functions     []Function
	WallFunctions []WallEntry // wall_fn: where the worker spent wall time, heaviest first
	Stacks        []Stack
	Profiler      string
	Period        float64 // sampling period in seconds
	Errors        []Error
	ErrorsDropped int64
	Fatal         bool
	Truncated     []string
}

// reset clears m for reuse, keeping slice capacity.
func (m *Message) reset() {
	sql, fns, wall, stacks, errs, trunc, stack, sites := m.SQL[:0], m.Functions[:0], m.WallFunctions[:0], m.Stacks[:0], m.Errors[:0], m.Truncated[:0], m.Stack[:0], m.Sites[:0]
	*m = Message{SQL: sql, Functions: fns, WallFunctions: wall, Stacks: stacks, Errors: errs, Truncated: trunc, Stack: stack, Sites: sites}
}
