package fpm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// Status is one pool's status page. Numbers are as php-fpm reports them;
// counters count since StartTime.
type Status struct {
	Pool               string    `json:"pool"`
	ProcessManager     string    `json:"process_manager"`
	StartTime          time.Time `json:"start_time"`
	AcceptedConn       uint64    `json:"accepted_conn"`
	ListenQueue        int64     `json:"listen_queue"`
	MaxListenQueue     int64     `json:"max_listen_queue"`
	ListenQueueLen     int64     `json:"listen_queue_len"`
	IdleProcesses      int64     `json:"idle_processes"`
	ActiveProcesses    int64     `json:"active_processes"`
	TotalProcesses     int64     `json:"total_processes"`
	MaxActiveProcesses int64     `json:"max_active_processes"`
	MaxChildrenReached uint64    `json:"max_children_reached"`
	SlowRequests       uint64    `json:"slow_requests"`
	Workers            []Worker  `json:"workers"`
}

// Worker is one worker process of the status page. For a worker in
// state Running the request fields describe the request it is running; for
// an idle one they describe its last request. "-" in php-fpm's output is an
// empty string here.
type Worker struct {
	PID            int       `json:"pid"`
	State          string    `json:"state"` // Idle, Running, Reading headers, Info, Finishing, Ending
	Started        time.Time `json:"started"`
	Requests       uint64    `json:"requests"` // requests served, the current one included
	RequestSeconds float64   `json:"request_seconds"`
	Method         string    `json:"method,omitempty"`
	URI            string    `json:"uri,omitempty"` // request uri with query string
	Script         string    `json:"script,omitempty"`
	ContentLength  int64     `json:"content_length"`
	User           string    `json:"user,omitempty"`
	LastCPU        float64   `json:"last_request_cpu_percent"`
	LastMemory     int64     `json:"last_request_memory_bytes"`

	duration time.Duration // RequestSeconds, exactly
}

// Running says whether w is executing a request.
func (w *Worker) Running() bool { return w.State == "Running" }

// statusJSON is the JSON of php-fpm's `?json&full` status page
// (sapi/fpm/fpm/fpm_status.c; field list in the php-fpm manual, "FPM status
// page"). Unknown fields are ignored so newer php-fpm versions still parse.
type statusJSON struct {
	Pool               *string `json:"pool"`
	ProcessManager     string  `json:"process manager"`
	StartTime          int64   `json:"start time"`
	AcceptedConn       uint64  `json:"accepted conn"`
	ListenQueue        int64   `json:"listen queue"`
	MaxListenQueue     int64   `json:"max listen queue"`
	ListenQueueLen     int64   `json:"listen queue len"`
	IdleProcesses      int64   `json:"idle processes"`
	ActiveProcesses    int64   `json:"active processes"`
	TotalProcesses     int64   `json:"total processes"`
	MaxActiveProcesses int64   `json:"max active processes"`
	MaxChildrenReached uint64  `json:"max children reached"`
	SlowRequests       uint64  `json:"slow requests"`
	Processes          []struct {
		PID             int     `json:"pid"`
		State           string  `json:"state"`
		StartTime       int64   `json:"start time"`
		Requests        uint64  `json:"requests"`
		RequestDuration uint64  `json:"request duration"` // µs
		RequestMethod   string  `json:"request method"`
		RequestURI      string  `json:"request uri"`
		ContentLength   int64   `json:"content length"`
		User            string  `json:"user"`
		Script          string  `json:"script"`
		LastRequestCPU  float64 `json:"last request cpu"`
		LastRequestMem  int64   `json:"last request memory"`
	} `json:"processes"`
}

// parseStatus parses the body of php-fpm's `?json&full` status page.
func parseStatus(b []byte) (Status, error) {
	var raw statusJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&raw); err != nil {
		return Status{}, fmt.Errorf("cannot parse php-fpm status JSON (%d bytes): %w", len(b), err)
	}
	if raw.Pool == nil || *raw.Pool == "" {
		return Status{}, fmt.Errorf("php-fpm status JSON has no pool name (%d bytes: is this the ?json status page?)", len(b))
	}
	dash := func(s string) string {
		if s == "-" {
			return ""
		}
		return s
	}
	st := Status{
		Pool:               *raw.Pool,
		ProcessManager:     raw.ProcessManager,
		StartTime:          time.Unix(raw.StartTime, 0).UTC(),
		AcceptedConn:       raw.AcceptedConn,
		ListenQueue:        raw.ListenQueue,
		MaxListenQueue:     raw.MaxListenQueue,
		ListenQueueLen:     raw.ListenQueueLen,
		IdleProcesses:      raw.IdleProcesses,
		ActiveProcesses:    raw.ActiveProcesses,
		TotalProcesses:     raw.TotalProcesses,
		MaxActiveProcesses: raw.MaxActiveProcesses,
		MaxChildrenReached: raw.MaxChildrenReached,
		SlowRequests:       raw.SlowRequests,
		Workers:            make([]Worker, 0, len(raw.Processes)),
	}
	for _, p := range raw.Processes {
		st.Workers = append(st.Workers, Worker{
			PID:            p.PID,
			State:          p.State,
			Started:        time.Unix(p.StartTime, 0).UTC(),
			Requests:       p.Requests,
			RequestSeconds: float64(p.RequestDuration) / 1e6,
			duration:       time.Duration(p.RequestDuration) * time.Microsecond,
			Method:         dash(p.RequestMethod),
			URI:            dash(p.RequestURI),
			Script:         dash(p.Script),
			ContentLength:  p.ContentLength,
			User:           dash(p.User),
			LastCPU:        p.LastRequestCPU,
			LastMemory:     p.LastRequestMem,
		})
	}
	return st, nil
}
