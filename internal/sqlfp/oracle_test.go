package sqlfp

import (
	"strings"
	"testing"
	"unicode/utf8"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// cleanWithScan is the reference implementation of cleanNormalized: it finds
// comments with PostgreSQL's own scanner. ok is false if Scan fails.
func cleanWithScan(s string) (string, bool) {
	res, err := pg_query.Scan(s)
	if err != nil {
		return "", false
	}
	var b strings.Builder
	prevEnd, comment := -1, false
	for _, t := range res.GetTokens() {
		if t.Token == pg_query.Token_SQL_COMMENT || t.Token == pg_query.Token_C_COMMENT {
			comment = true
			continue
		}
		start, end := int(t.Start), int(t.End)
		if prevEnd >= 0 && start > prevEnd && !(comment && tight(s[prevEnd-1], s[start])) {
			b.WriteByte(' ')
		}
		b.WriteString(s[start:end])
		prevEnd, comment = end, false
		if b.Len() > MaxNormalizedLen {
			break
		}
	}
	return truncate(b.String()), true
}

// checkCleanMatchesScan compares cleanNormalized with the scanner-based
// reference on sql itself and on its Normalize output, if pg_query accepts
// sql. Normalize replaces most strings, so the raw text is where quoting
// gets exercised.
func checkCleanMatchesScan(t *testing.T, sql string) {
	t.Helper()
	if i := strings.IndexByte(sql, 0); i >= 0 {
		sql = sql[:i] // C strings end there; Fingerprint cuts there too
	}
	if !utf8.ValidString(sql) {
		// PostgreSQL rejects invalid UTF-8 before its scanner runs, and
		// pg_query.Scan's offsets are unreliable on it (it drops tokens
		// after a long invalid identifier), so there is no reference.
		return
	}
	norm, err := pg_query.Normalize(sql)
	if err != nil {
		return
	}
	for _, s := range []string{sql, norm} {
		want, ok := cleanWithScan(s)
		if !ok {
			continue
		}
		if got := cleanNormalized(s); got != want {
			t.Errorf("cleanNormalized(%q) = %q; want %q (as pg_query.Scan sees it)", s, got, want)
		}
	}
}

func TestCleanNormalizedMatchesScan(t *testing.T) {
	tests := []struct{ name, sql string }{
		{"sqlcommenter", "SELECT * FROM t WHERE id = 1 /*endpoint='GET%20%2Forders'*/"},
		{"comment markers in identifiers", `SELECT "a -- b", "c /* d" FROM t -- e`},
		{"standard string ending in backslash", `SELECT a LIKE '\' -- c` + "\n, d FROM t"},
		{"escape string", `CREATE TABLE t (a text DEFAULT E'it\'s -- no' /* c */)`},
		{"dollar quote", "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1 -- inner $body$ LANGUAGE sql /* c */"},
		{"identifier with dollar", "SELECT a$b$c /* x */ FROM t"},
		{"operator before comment", "SELECT 1 +-- c\n2"},
		{"operator before block comment", "SELECT 1 */* c */2"},
		{"nested comment", "SELECT /* a /* b */ c */ 1"},
		{"unicode string", "SELECT U&'d\\0061t\\+000061' /* x */, U&\"d\\0061\" FROM t"},
		{"bit strings", "SELECT B'101' /* x */, X'1F' FROM t"},
		{"line comment ended by CR", "SELECT 1 -- x\r, 2"},
		{"tabs and newlines", "SELECT\ta,\n\r\f\vb -- x\nFROM t"},
		{"comment without space", "SELECT a/**/FROM t"},
		{"comment after paren", "SELECT f(/*x*/a, b/*y*/) FROM t"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := pg_query.Normalize(tt.sql); err != nil {
				t.Fatalf("test case does not parse: %v", err)
			}
			checkCleanMatchesScan(t, tt.sql)
		})
	}
}
