package phpagent

import (
	"strings"

	"github.com/bitville/bitville-apm/internal/protocol"
)

var knownMethods = map[string]string{
	"GET": "GET", "HEAD": "HEAD", "POST": "POST", "PUT": "PUT", "PATCH": "PATCH",
	"DELETE": "DELETE", "OPTIONS": "OPTIONS", "CONNECT": "CONNECT", "TRACE": "TRACE", "CLI": "CLI",
}

// normalizeMethod bounds the method label: anything but the standard
// methods and CLI is "other".
func normalizeMethod(m string) string {
	if v, ok := knownMethods[m]; ok {
		return v
	}
	if v, ok := knownMethods[strings.ToUpper(m)]; ok {
		return v
	}
	return Overflow
}

var statusClasses = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

// statusClass is the status label: the HTTP status class, or for CLI runs
// "ok" or "error" from the exit code.
func statusClass(m *protocol.Message) string {
	if m.Method == "CLI" || m.SAPI == "cli" {
		if m.Fatal || (m.HasExit && m.Exit != 0) {
			return "error"
		}
		return "ok"
	}
	if m.Status >= 100 && m.Status < 600 {
		return statusClasses[m.Status/100-1]
	}
	return "unknown"
}

// memoryLimitPrefix starts the message of the fatal error PHP raises when a
// request exceeds memory_limit ("Allowed memory size of 134217728 bytes
// exhausted (tried to allocate 20480 bytes)").
const memoryLimitPrefix = "Allowed memory size of"

// errorKind maps a PHP error (its type, or exception class, and message) to
// a bounded kind. Running out of memory_limit has a kind of its own: a
// request that dies of it is a different problem from a bug.
func errorKind(e *protocol.Error) string {
	switch e.Type {
	case "E_ERROR", "E_CORE_ERROR", "E_COMPILE_ERROR", "E_USER_ERROR", "E_RECOVERABLE_ERROR", "E_PARSE":
		if strings.HasPrefix(e.Message, memoryLimitPrefix) {
			return "memory_limit"
		}
		return "error"
	case "E_WARNING", "E_CORE_WARNING", "E_COMPILE_WARNING", "E_USER_WARNING":
		return "warning"
	case "E_NOTICE", "E_USER_NOTICE", "E_STRICT":
		return "notice"
	case "E_DEPRECATED", "E_USER_DEPRECATED":
		return "deprecated"
	}
	return "exception"
}
