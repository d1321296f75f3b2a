// Package sqlfp maps SQL statement texts to query fingerprints.
//
// The PHP agent reports the SQL it saw and the PostgreSQL exporter reads
// pg_stat_statements; both must land on the same query_fp so that a slow
// endpoint can be joined with the server-side statistics of its statements.
// The fingerprint is therefore PostgreSQL's own notion of "the same query",
// as computed by pg_query (libpg_query, PostgreSQL's parser in a library):
// constants are ignored, comments are ignored, and unquoted identifiers are
// case-folded, so
//
//	SELECT * FROM t WHERE id = 42 /*endpoint='GET%20%2Forders'*/
//	select * from T where id = $1
//
// share one fingerprint. Lists of constants do not count either, so
// "IN (1,2,3)" and "IN ($1)" match.
//
// Texts that pg_query cannot parse still get a fingerprint from a small
// fallback tokenizer (see Result.Fallback). That covers statements the agent
// truncated, other SQL dialects such as MySQL, and PDO-style "?"/":name"
// placeholders (which are first rewritten to $n and given to pg_query
// again, since pdo_pgsql sends them to the server as $n). A fallback
// fingerprint is stable across literal values but lives in its own hash
// space: the fallback fingerprint of a truncated statement is not the
// pg_query fingerprint of the complete statement.
//
// Fingerprint costs microseconds (it parses the text twice in C); hot paths
// should go through a Cache, whose hits cost tens of nanoseconds and do not
// allocate.
package sqlfp

import (
	"strconv"
	"strings"
	"unicode/utf8"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// MaxNormalizedLen bounds Result.Normalized in bytes, not counting the "…"
// appended when the text had to be cut.
const MaxNormalizedLen = 2048

// truncMark is appended to a Normalized text that was cut.
const truncMark = "…"

// EmptyFingerprint is the fingerprint of a text without any SQL token:
// empty, whitespace only or comments only. It is the value pg_query itself
// returns for such input, so both sides agree on it.
const EmptyFingerprint = "d8d13f8b2da6c9ad"

// Result is the fingerprint of one SQL text.
type Result struct {
	// Fingerprint is 16 lower-case hex characters.
	Fingerprint string
	// Normalized is the statement with literals replaced by $1, $2, …,
	// comments removed and whitespace collapsed to single spaces, at most
	// MaxNormalizedLen bytes (cut on a UTF-8 boundary, with "…" appended
	// when cut). It is always valid UTF-8: invalid bytes become U+FFFD.
	// It is meant for display: texts with one fingerprint may normalize
	// differently (e.g. IN lists of different lengths), and on the pg_query
	// path the numbering is pg_query.Normalize's, which is not always left
	// to right ("LIMIT $2 OFFSET $1").
	Normalized string
	// Fallback is set when pg_query could not parse the text and the
	// fallback tokenizer produced the Result.
	Fallback bool
}

// Fingerprint fingerprints one SQL text. It is pure and uncached (see Cache)
// and never fails or panics:
//   - a text without SQL tokens (empty, whitespace, comments only) gives
//     Result{Fingerprint: EmptyFingerprint}, with Fallback set only if the
//     text was not parseable (an unterminated comment);
//   - a NUL byte ends the text, as it does on the PostgreSQL wire protocol;
//   - a text pg_query rejects is handled by the fallback tokenizer.
func Fingerprint(sql string) Result {
	if i := strings.IndexByte(sql, 0); i >= 0 {
		sql = sql[:i]
	}
	if isBlank(sql) {
		return Result{Fingerprint: EmptyFingerprint}
	}
	if r, ok := pgFingerprint(sql); ok {
		return r
	}
	toks := lex(nil, sql, lenient)
	if rewritten, ok := rewritePlaceholders(sql, toks); ok {
		if r, ok := pgFingerprint(rewritten); ok {
			return r
		}
	}
	return fallback(sql, toks)
}

// FingerprintTruncated fingerprints a text known to be cut short (the PHP
// agent marks statements it truncated). It skips PostgreSQL's parser, which
// could accept the cut text as a different, shorter statement, and always
// uses the fallback tokenizer, so every truncation of one statement shape
// gets one fingerprint. It never equals the complete statement's fingerprint.
func FingerprintTruncated(sql string) Result {
	if i := strings.IndexByte(sql, 0); i >= 0 {
		sql = sql[:i]
	}
	if isBlank(sql) {
		return Result{Fingerprint: EmptyFingerprint}
	}
	return fallback(sql, lex(nil, sql, lenient))
}

func isBlank(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isSpace(s[i]) {
			return false
		}
	}
	return true
}

// pgFingerprint fingerprints sql with pg_query. ok is false when pg_query
// rejects the text. pg_query is C, so a crash in it cannot be recovered here;
// the recover only guards the Go side of the binding.
func pgFingerprint(sql string) (r Result, ok bool) {
	defer func() {
		if recover() != nil {
			r, ok = Result{}, false
		}
	}()
	fp, err := pg_query.Fingerprint(sql)
	if err != nil || !isHex16(fp) {
		return Result{}, false
	}
	norm, err := pg_query.Normalize(sql)
	if err != nil {
		// Not expected once Fingerprint parsed the text; the tokenizer
		// still gives a readable text under the parser's fingerprint.
		norm = normalizeWithLexer(sql)
	} else {
		norm = cleanNormalized(norm)
	}
	return Result{Fingerprint: fp, Normalized: norm}, true
}

func isHex16(s string) bool {
	if len(s) != 16 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isDigit(c) && !(c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// cleanNormalized removes comments from pg_query.Normalize output (it keeps
// them, sqlcommenter tags included) and collapses whitespace. When the text
// has nothing that whitespace could hide in (comments, quotes, dollar
// quotes), a byte-level pass is enough. Otherwise the tokenizer finds the
// comments, in its PostgreSQL mode, which is exact on text PostgreSQL's
// parser accepted. The tests and the fuzzer check it against pg_query.Scan,
// which is not used here because it is a third trip into C plus protobuf
// decoding of every token: for a typical statement with a sqlcommenter tag
// it made Fingerprint about 1.5 times slower and took 76 allocations instead
// of 9.
func cleanNormalized(s string) string {
	if !needsScan(s) {
		return truncate(collapseSpace(s))
	}
	return renderTokens(s, lex(nil, s, postgres), false)
}

// needsScan reports whether s may contain comments, quoted text or dollar
// quotes, where a byte-level whitespace pass would be wrong.
func needsScan(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\'', '"':
			return true
		case '-':
			if i+1 < len(s) && s[i+1] == '-' {
				return true
			}
		case '/':
			if i+1 < len(s) && s[i+1] == '*' {
				return true
			}
		case '$':
			if i+1 >= len(s) || !isDigit(s[i+1]) {
				return true
			}
		}
	}
	return false
}

// collapseSpace trims s and turns every whitespace run into one space. It
// returns s itself when nothing changes.
func collapseSpace(s string) string {
	clean := len(s) > 0 && !isSpace(s[0]) && !isSpace(s[len(s)-1])
	for i := 0; clean && i < len(s); i++ {
		if isSpace(s[i]) && (s[i] != ' ' || isSpace(s[i+1])) {
			clean = false
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	pending := false
	for i := 0; i < len(s); i++ {
		if isSpace(s[i]) {
			pending = b.Len() > 0
			continue
		}
		if pending {
			b.WriteByte(' ')
			pending = false
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// normalizeWithLexer replaces literals using the tokenizer, without list
// collapsing. It is a safety net for when pg_query.Normalize fails on a text
// pg_query.Fingerprint accepted.
func normalizeWithLexer(s string) string {
	return renderTokens(s, foldSigns(s, lex(nil, s, postgres)), true)
}

// truncate makes s valid UTF-8 (the agent may cut a text inside a multi-byte
// character, and Normalized ends up in JSON and in labels) and cuts it to
// MaxNormalizedLen bytes on a rune boundary.
func truncate(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, string(utf8.RuneError))
	}
	if len(s) <= MaxNormalizedLen {
		return s
	}
	cut := MaxNormalizedLen
	for cut > MaxNormalizedLen-utf8.UTFMax && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + truncMark
}

// rewritePlaceholders replaces PDO placeholders ("?", ":name") with $n
// parameters, numbered after the highest $n already present, so that a
// statement captured before pdo_pgsql rewrote it parses like the text the
// server (and pg_stat_statements) saw. ok is false when there is nothing to
// rewrite.
func rewritePlaceholders(sql string, toks []token) (string, bool) {
	next, found := 1, false
	for _, t := range toks {
		switch t.kind {
		case tkPlaceholder:
			found = true
		case tkParam:
			if n, err := strconv.Atoi(sql[t.start+1 : t.end]); err == nil && n >= next && n < 1<<30 {
				next = n + 1
			}
		}
	}
	if !found {
		return "", false
	}
	var b strings.Builder
	b.Grow(len(sql) + 8)
	last := 0
	for _, t := range toks {
		if t.kind != tkPlaceholder {
			continue
		}
		b.WriteString(sql[last:t.start])
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(next))
		next++
		last = t.end
	}
	b.WriteString(sql[last:])
	return b.String(), true
}
