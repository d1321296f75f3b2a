package sqlfp

import (
	"strings"
	"testing"
	"unicode/utf8"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// sameFingerprint asserts that every text in texts fingerprints alike and
// that the path taken (pg_query or fallback) is the expected one.
func sameFingerprint(t *testing.T, texts []string, wantFallback bool) {
	t.Helper()
	first := Fingerprint(texts[0])
	for _, sql := range texts {
		got := Fingerprint(sql)
		if got.Fingerprint != first.Fingerprint {
			t.Errorf("Fingerprint(%q) = %s; want %s (the fingerprint of %q)", sql, got.Fingerprint, first.Fingerprint, texts[0])
		}
		if got.Fallback != wantFallback {
			t.Errorf("Fingerprint(%q).Fallback = %v; want %v", sql, got.Fallback, wantFallback)
		}
	}
}

func TestLiteralsDoNotChangeFingerprint(t *testing.T) {
	tests := []struct {
		name  string
		texts []string
	}{
		{"integer", []string{"SELECT * FROM t WHERE id = 42", "SELECT * FROM t WHERE id = 7", "SELECT * FROM t WHERE id = -7"}},
		{"string", []string{"SELECT * FROM users WHERE email = 'a@b.c'", "SELECT * FROM users WHERE email = 'it''s'", "SELECT * FROM users WHERE email = E'x\\'y'", "SELECT * FROM users WHERE email = $$d$$"}},
		{"mixed types", []string{"SELECT * FROM t WHERE a = 1.5e3", "SELECT * FROM t WHERE a = 'x'", "SELECT * FROM t WHERE a = true", "SELECT * FROM t WHERE a = 0x1F"}},
		{"case and whitespace", []string{"SELECT a FROM t WHERE b = 1", "select A\n\tfrom T   where B=2"}},
		{"limit offset", []string{"SELECT * FROM t ORDER BY id LIMIT 10 OFFSET 20", "SELECT * FROM t ORDER BY id LIMIT 50 OFFSET 0"}},
		{"insert", []string{"INSERT INTO t (a, b) VALUES (1, 'x')", "INSERT INTO t (a, b) VALUES (2, 'y')"}},
		{"typed literal", []string{"SELECT * FROM t WHERE d > DATE '2024-01-01'", "SELECT * FROM t WHERE d > DATE '1999-12-31'"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { sameFingerprint(t, tt.texts, false) })
	}
}

// TestParamsMatchLiterals is the contract with the PostgreSQL exporter: the
// text pg_stat_statements shows ($n in place of constants) must fingerprint
// like the text the PHP agent saw (constants in place).
func TestParamsMatchLiterals(t *testing.T) {
	tests := []struct {
		name    string
		literal string // as the PHP agent sends it
		param   string // as pg_stat_statements shows it
	}{
		{"equality", "SELECT * FROM t WHERE id = 42", "SELECT * FROM t WHERE id = $1"},
		{"several", "SELECT * FROM t WHERE a = 1 AND b = 'x' AND c = 2.5", "SELECT * FROM t WHERE a = $1 AND b = $2 AND c = $3"},
		{"negative", "SELECT * FROM t WHERE a = -5", "SELECT * FROM t WHERE a = $1"},
		{"boolean", "UPDATE t SET done = true WHERE id = 3", "UPDATE t SET done = $1 WHERE id = $2"},
		{"limit offset", "SELECT * FROM t LIMIT 10 OFFSET 5", "SELECT * FROM t LIMIT $1 OFFSET $2"},
		{"in list", "SELECT * FROM t WHERE id IN (1, 2, 3)", "SELECT * FROM t WHERE id IN ($1, $2, $3)"},
		{"in list squashed by PG 18", "SELECT * FROM t WHERE id IN (1, 2, 3)", "SELECT * FROM t WHERE id IN ($1 /*, ... */)"},
		{"typed literal", "SELECT * FROM t WHERE d > DATE '2024-01-01'", "SELECT * FROM t WHERE d > DATE $1"},
		{"interval", "SELECT now() - interval '1 day'", "SELECT now() - interval $1"},
		{"cast", "SELECT * FROM t WHERE d > '2024-01-01'::date", "SELECT * FROM t WHERE d > $1::date"},
		{"multi-row insert", "INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y')", "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)"},
		{"set", "SET search_path = 'app'", "SET search_path = $1"},
		{"pdo positional", "SELECT * FROM t WHERE a = ? AND b = ?", "SELECT * FROM t WHERE a = $1 AND b = $2"},
		{"pdo named", "SELECT * FROM t WHERE a = :a AND b = :b", "SELECT * FROM t WHERE a = $1 AND b = $2"},
		{"sqlcommenter", "SELECT * FROM t WHERE id = 42 /*endpoint='GET%20%2Forders%2F%7Bid%7D'*/", "SELECT * FROM t WHERE id = $1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lit, par := Fingerprint(tt.literal), Fingerprint(tt.param)
			if lit.Fallback || par.Fallback {
				t.Fatalf("Fallback = %v, %v; want false, false", lit.Fallback, par.Fallback)
			}
			if lit.Fingerprint != par.Fingerprint {
				t.Errorf("Fingerprint(%q) = %s; want %s, the fingerprint of %q", tt.literal, lit.Fingerprint, par.Fingerprint, tt.param)
			}
			// The exporter may call pg_query directly; it must agree too.
			direct, err := pg_query.Fingerprint(tt.param)
			if err != nil {
				t.Fatalf("pg_query.Fingerprint(%q): %v", tt.param, err)
			}
			if direct != par.Fingerprint {
				t.Errorf("pg_query.Fingerprint(%q) = %s; want %s", tt.param, direct, par.Fingerprint)
			}
		})
	}
}

func TestCommentsIgnored(t *testing.T) {
	tests := []struct {
		name, plain, commented string
	}{
		{"sqlcommenter", "SELECT * FROM orders WHERE id = 1", "SELECT * FROM orders WHERE id = 1 /*endpoint='GET%20%2Forders%2F%7Bid%7D',db_driver='pdo'*/"},
		{"line comment", "SELECT * FROM orders WHERE id = 1", "-- fetch one order\nSELECT * FROM orders -- by id\nWHERE id = 1"},
		{"inline block", "SELECT a, b FROM t", "SELECT a, /* the b column */ b FROM t"},
		{"nested block", "SELECT a FROM t", "SELECT a /* outer /* inner */ still */ FROM t"},
		{"comment marker inside a string", "SELECT a FROM t WHERE b = 'x'", "SELECT a FROM t WHERE b = '-- not a comment /* */'"},
		{"fallback sqlcommenter", "SELECT * FROM `orders` WHERE id = 1", "SELECT * FROM `orders` WHERE id = 1 /*endpoint='GET%20%2Forders'*/"},
		{"fallback truncated comment", "SELECT * FROM `orders` WHERE id = 1", "SELECT * FROM `orders` WHERE id = 1 /*endpoint='GET%20%2Ford"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, c := Fingerprint(tt.plain), Fingerprint(tt.commented)
			if c.Fingerprint != p.Fingerprint {
				t.Errorf("Fingerprint(%q) = %s; want %s", tt.commented, c.Fingerprint, p.Fingerprint)
			}
			for _, marker := range []string{"/*", "*/", "--", "endpoint", "inner", "fetch"} {
				if strings.Contains(c.Normalized, marker) && !strings.Contains(tt.plain, marker) {
					t.Errorf("Normalized = %q; want no %q from a comment", c.Normalized, marker)
				}
			}
		})
	}
}

func TestListLengthsShareFingerprint(t *testing.T) {
	tests := []struct {
		name         string
		texts        []string
		wantFallback bool
	}{
		{"in list", []string{
			"SELECT * FROM t WHERE id IN (1)",
			"SELECT * FROM t WHERE id IN (1, 2)",
			"SELECT * FROM t WHERE id IN (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)",
			"SELECT * FROM t WHERE id IN ($1, $2)",
		}, false},
		{"values rows", []string{
			"INSERT INTO t (a, b) VALUES (1, 2)",
			"INSERT INTO t (a, b) VALUES (1, 2), (3, 4)",
			"INSERT INTO t (a, b) VALUES (1, 2), (3, 4), (5, 6)",
		}, false},
		{"fallback in list", []string{
			"SELECT * FROM `t` WHERE id IN (1)",
			"SELECT * FROM `t` WHERE id IN (1, 2)",
			"SELECT * FROM `t` WHERE id IN ('a', 'b', 'c', 'd')",
			"SELECT * FROM `t` WHERE id IN (-1, 2.5, ?)",
		}, true},
		{"fallback values rows", []string{
			"INSERT INTO `t` (`a`, `b`) VALUES (1, 'x')",
			"INSERT INTO `t` (`a`, `b`) VALUES (1, 'x'), (2, 'y')",
			"INSERT INTO `t` (`a`, `b`) VALUES (1, 'x'),(2, 'y'),(3, 'z')",
		}, true},
		{"truncated in list", []string{
			"SELECT * FROM orders WHERE id IN (1,2,3",
			"SELECT * FROM orders WHERE id IN (1,2,3,",
			"SELECT * FROM orders WHERE id IN (10, 20, 30, 40",
			"SELECT * FROM orders WHERE id IN (7",
		}, true},
		{"truncated values rows", []string{
			"INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y'), (3,",
			"INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y'), (3, 'z'),",
			"INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'yyyyyyy",
			"INSERT INTO t (a, b) VALUES (1, 'x'), (",
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { sameFingerprint(t, tt.texts, tt.wantFallback) })
	}
}

func TestFallback(t *testing.T) {
	tests := []struct {
		name           string
		texts          []string // all must share one fallback fingerprint
		wantNormalized string   // of texts[0]
	}{
		{"truncated string", []string{"SELECT a FROM t WHERE x = 'abc", "SELECT a FROM t WHERE x = 'a much longer value that was cut"}, "SELECT a FROM t WHERE x = $1"},
		{"truncated in list", []string{"SELECT * FROM orders WHERE id IN (1,2,3", "SELECT * FROM orders WHERE id IN (4,5"}, "SELECT * FROM orders WHERE id IN ($1"},
		{"mysql backticks", []string{"SELECT `id`, `name` FROM `users` WHERE `email` = 'a@b.c' LIMIT 1", "SELECT `id`, `name` FROM `users` WHERE `email` = 'x@y.z' LIMIT 20"}, "SELECT `id`, `name` FROM `users` WHERE `email` = $1 LIMIT $2"},
		{"mysql backslash escape", []string{"SELECT * FROM `u` WHERE n = 'O\\'Brien' AND a = 1", "SELECT * FROM `u` WHERE n = 'Smith' AND a = 2"}, "SELECT * FROM `u` WHERE n = $1 AND a = $2"},
		{"mysql upsert", []string{"INSERT INTO `t` (`a`) VALUES (1) ON DUPLICATE KEY UPDATE `a` = VALUES(`a`)", "INSERT INTO `t` (`a`) VALUES (2), (3) ON DUPLICATE KEY UPDATE `a` = VALUES(`a`)"}, "INSERT INTO `t` (`a`) VALUES ($1) ON DUPLICATE KEY UPDATE `a` = VALUES(`a`)"},
		{"numbers", []string{"SELECT * FROM `t` WHERE a = -1 AND b > 1.5e-3 AND c = 0xFF AND d = .5", "SELECT * FROM `t` WHERE a = 2 AND b > 7 AND c = 1 AND d = -3.25"}, "SELECT * FROM `t` WHERE a = $1 AND b > $2 AND c = $3 AND d = $4"},
		{"binary minus kept", []string{"SELECT a - 1 FROM `t`", "SELECT a - 200 FROM `t`"}, "SELECT a - $1 FROM `t`"},
		{"dollar quote", []string{"SELECT $fn$ body ' with quote $fn$ FROM `t`", "SELECT $$x$$ FROM `t`"}, "SELECT $1 FROM `t`"},
		{"unterminated dollar quote", []string{"SELECT * FROM t WHERE b = $q$abc", "SELECT * FROM t WHERE b = $$"}, "SELECT * FROM t WHERE b = $1"},
		{"params numbered after existing", []string{"SELECT * FROM t WHERE a = $2 AND b = 'x", "SELECT * FROM t WHERE a = $2 AND b = 'y"}, "SELECT * FROM t WHERE a = $2 AND b = $3"},
		{"null kept", []string{"SELECT * FROM `t` WHERE a IS NULL AND b = 1", "SELECT * FROM `t` WHERE a IS null AND b = 2"}, "SELECT * FROM `t` WHERE a IS NULL AND b = $1"},
		{"keyword case", []string{"SELECT * FROM `t` WHERE a = 1", "select * from `t` where A = 1"}, "SELECT * FROM `t` WHERE a = $1"},
		{"quoted identifier equals unquoted lower case", []string{"SELECT \"id\" FROM `t` WHERE x = 1", "SELECT id FROM `t` WHERE x = 1"}, "SELECT \"id\" FROM `t` WHERE x = $1"},
		{"comment between tokens", []string{"SELECT f(/*x*/1)/**/FROM `t`", "SELECT f(2) FROM `t`"}, "SELECT f($1) FROM `t`"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sameFingerprint(t, tt.texts, true)
			if got := Fingerprint(tt.texts[0]).Normalized; got != tt.wantNormalized {
				t.Errorf("Normalized = %q; want %q", got, tt.wantNormalized)
			}
		})
	}
}

// TestTruncatedDiffersFromComplete documents a limit rather than a wish: the
// fallback hashes tokens, pg_query hashes a parse tree, so a cut statement
// does not get the fingerprint of the whole one.
func TestTruncatedDiffersFromComplete(t *testing.T) {
	whole := Fingerprint("SELECT a FROM t WHERE x = 'abc'")
	cut := Fingerprint("SELECT a FROM t WHERE x = 'abc")
	if whole.Fallback || !cut.Fallback {
		t.Fatalf("Fallback = %v, %v; want false, true", whole.Fallback, cut.Fallback)
	}
	if whole.Fingerprint == cut.Fingerprint {
		t.Errorf("truncated and complete both got %s; want different fingerprints", cut.Fingerprint)
	}
}

func TestDifferentShapesDiffer(t *testing.T) {
	tests := []struct {
		name string
		a, b string
	}{
		{"table", "SELECT * FROM orders WHERE id = 1", "SELECT * FROM customers WHERE id = 1"},
		{"column", "SELECT * FROM t WHERE a = 1", "SELECT * FROM t WHERE b = 1"},
		{"selected columns", "SELECT a FROM t", "SELECT a, b FROM t"},
		{"operator", "SELECT * FROM t WHERE a = 1", "SELECT * FROM t WHERE a > 1"},
		{"statement kind", "DELETE FROM t WHERE a = 1", "SELECT * FROM t WHERE a = 1"},
		{"null versus value", "SELECT * FROM t WHERE a IS NULL", "SELECT * FROM t WHERE a = 1"},
		{"quoted case", "SELECT * FROM \"Users\"", "SELECT * FROM users"},
		{"fallback table", "SELECT * FROM `orders` WHERE id = 1", "SELECT * FROM `customers` WHERE id = 1"},
		{"fallback column", "SELECT `a` FROM `t` WHERE x = 1", "SELECT `b` FROM `t` WHERE x = 1"},
		{"fallback operator", "SELECT * FROM `t` WHERE a = 1", "SELECT * FROM `t` WHERE a < 1"},
		{"fallback token boundary", "SELECT * FROM `t` WHERE ab = 1", "SELECT * FROM `t` WHERE a b = 1"},
		{"row constructor columns", "SELECT * FROM `t` WHERE (a, b) IN ((1, 2))", "SELECT * FROM `t` WHERE (a, c) IN ((1, 2))"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := Fingerprint(tt.a), Fingerprint(tt.b)
			if a.Fingerprint == b.Fingerprint {
				t.Errorf("Fingerprint(%q) = Fingerprint(%q) = %s; want different", tt.a, tt.b, a.Fingerprint)
			}
		})
	}
}

func TestNormalized(t *testing.T) {
	tests := []struct {
		name, sql, want string
	}{
		{"literals", "SELECT * FROM t WHERE a = 1 AND b = 'x'", "SELECT * FROM t WHERE a = $1 AND b = $2"},
		{"whitespace", "  SELECT a,\n\t b\r\n FROM   t  ", "SELECT a, b FROM t"},
		{"sqlcommenter", "SELECT * FROM t WHERE id = 42 /*endpoint='GET%20%2Forders'*/", "SELECT * FROM t WHERE id = $1"},
		{"comment in the middle", "SELECT a /* x */ , b -- y\nFROM t", "SELECT a, b FROM t"},
		{"quoted identifier keeps its spaces", "SELECT \"a  b\" FROM t WHERE c = 1", "SELECT \"a  b\" FROM t WHERE c = $1"},
		{"params kept", "SELECT * FROM t WHERE id = $1", "SELECT * FROM t WHERE id = $1"},
		{"pdo placeholders", "SELECT * FROM t WHERE a = ? AND b = :b", "SELECT * FROM t WHERE a = $1 AND b = $2"},
		{"multibyte", "SELECT 'é' /* ü */, \"ß\" FROM t", "SELECT $1, \"ß\" FROM t"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Fingerprint(tt.sql).Normalized; got != tt.want {
				t.Errorf("Normalized = %q; want %q", got, tt.want)
			}
		})
	}
}

func TestNormalizedLength(t *testing.T) {
	// Columns named with a 2-byte letter push rune boundaries around, so
	// that some cut lands in the middle of a rune and must back off.
	for _, fill := range []string{"a", "é", "ab€"} {
		var b strings.Builder
		b.WriteString("SELECT ")
		for i := 0; b.Len() < 3*MaxNormalizedLen; i++ {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString("c")
			b.WriteString(strings.Repeat(fill, i%7+1))
		}
		b.WriteString(" FROM t WHERE x = 1")
		for _, sql := range []string{b.String(), b.String()[:3*MaxNormalizedLen-5] + " 'cut"} {
			r := Fingerprint(sql)
			if len(r.Normalized) > MaxNormalizedLen+len(truncMark) {
				t.Errorf("len(Normalized) = %d; want <= %d", len(r.Normalized), MaxNormalizedLen+len(truncMark))
			}
			if !strings.HasSuffix(r.Normalized, truncMark) {
				t.Errorf("Normalized ends in %q; want %q", r.Normalized[len(r.Normalized)-8:], truncMark)
			}
			if !utf8.ValidString(r.Normalized) {
				t.Errorf("Normalized is not valid UTF-8 (fill %q, fallback %v)", fill, r.Fallback)
			}
		}
	}
}

func TestEmptyInput(t *testing.T) {
	tests := []struct {
		name, sql    string
		wantFallback bool
	}{
		{"empty", "", false},
		{"whitespace", " \t\r\n ", false},
		{"line comment", "-- nothing here", false},
		{"block comment", "/* nothing */", false},
		{"unterminated comment", "/* cut", true},
		{"nul", "\x00SELECT 1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Fingerprint(tt.sql)
			want := Result{Fingerprint: EmptyFingerprint, Fallback: tt.wantFallback}
			if got != want {
				t.Errorf("Fingerprint(%q) = %+v; want %+v", tt.sql, got, want)
			}
		})
	}
	// EmptyFingerprint must be what pg_query says, so both sides agree.
	if fp, err := pg_query.Fingerprint(""); err != nil || fp != EmptyFingerprint {
		t.Errorf("pg_query.Fingerprint(\"\") = %q, %v; want %q, nil", fp, err, EmptyFingerprint)
	}
}

func TestCutInsideRune(t *testing.T) {
	for _, sql := range []string{"SELECT * FROM café WHERE a = 'Jos\xc3", "SELECT * FROM caf\xc3", "SELECT \xff\xfe FROM t"} {
		r := Fingerprint(sql)
		if !utf8.ValidString(r.Normalized) {
			t.Errorf("Fingerprint(%q).Normalized = %q; want valid UTF-8", sql, r.Normalized)
		}
	}
}

func TestNULEndsText(t *testing.T) {
	got, want := Fingerprint("SELECT * FROM t WHERE a = 1\x00 garbage"), Fingerprint("SELECT * FROM t WHERE a = 1")
	if got != want {
		t.Errorf("got %+v; want %+v", got, want)
	}
}

func TestLexerNeverStalls(t *testing.T) {
	// Every byte value, alone and after a prefix, must lex to tokens that
	// cover the input in order without overlapping.
	for _, mode := range []lexMode{lenient, postgres} {
		for c := 0; c < 256; c++ {
			for _, prefix := range []string{"", "a", "-", "/", "'", "$", ":", "0x", "U&", "E", "'\\"} {
				src := prefix + string([]byte{byte(c)})
				prev := 0
				for _, tok := range lex(nil, src, mode) {
					if tok.start < prev || tok.end <= tok.start || tok.end > len(src) {
						t.Fatalf("lex(%q, %d) gave token [%d,%d) after offset %d", src, mode, tok.start, tok.end, prev)
					}
					prev = tok.end
				}
			}
		}
	}
}
