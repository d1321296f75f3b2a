package sqlfp

// This file holds the hand-written SQL lexer behind the fallback path. It is
// deliberately forgiving: it never fails, it accepts PostgreSQL and MySQL
// spellings side by side, and anything unterminated at the end of the text
// (the agent cuts statements at about 2 KiB) simply runs to the end.

// tokKind classifies a lexed token.
type tokKind uint8

const (
	tkWord        tokKind = iota + 1 // unquoted identifier or keyword
	tkQuotedIdent                    // "ident" or `ident`
	tkString                         // '...', E'...', X'...', $tag$...$tag$ and friends
	tkNumber                         // 42, 1.5e3, .5, 0x1F
	tkParam                          // $1: a server-side parameter
	tkPlaceholder                    // ? or :name: a client-side (PDO) placeholder
	tkOp                             // run of operator characters, or a stray byte
	tkPunct                          // ( ) [ ] { } , ; . : ::
)

// token is a lexed token. It holds offsets instead of a substring so that a
// token slice is cheap and the source can be sliced again when rendering.
type token struct {
	start, end int
	kind       tokKind
	// space records whether whitespace or a comment came before the token;
	// rendering uses it to put back exactly one space where the source had
	// any separation, and none where it had none.
	space bool
	// comment records that a comment was among that separation.
	comment bool
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isHexDigit(c byte) bool {
	return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// isIdentStart follows PostgreSQL: letters, underscore and any byte of a
// multi-byte UTF-8 sequence may start an identifier.
func isIdentStart(c byte) bool {
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80
}

// isIdentCont additionally allows digits and '$', which PostgreSQL permits
// inside identifiers (so "a$b" is one word and not a dollar quote).
func isIdentCont(c byte) bool { return isIdentStart(c) || isDigit(c) || c == '$' }

// isOpChar reports PostgreSQL operator characters. The backtick is missing on
// purpose: here it quotes MySQL identifiers.
func isOpChar(c byte) bool {
	switch c {
	case '+', '-', '*', '/', '<', '>', '=', '~', '!', '@', '#', '%', '^', '&', '|', '?':
		return true
	}
	return false
}

// lexMode selects how backslashes in string literals are read.
type lexMode uint8

const (
	// lenient treats a backslash as an escape in every string literal:
	// MySQL's rule, used for texts PostgreSQL rejected.
	lenient lexMode = iota
	// postgres follows PostgreSQL with standard_conforming_strings on (the
	// default since 9.1): backslashes escape only inside E'...' strings.
	// It is used on texts PostgreSQL's parser has accepted.
	postgres
)

// lex splits src into tokens, dropping whitespace and comments. It appends to
// dst so callers can reuse a buffer.
func lex(dst []token, src string, mode lexMode) []token {
	n := len(src)
	space, comment := false, false
	for i := 0; i < n; {
		c := src[i]
		var next byte
		if i+1 < n {
			next = src[i+1]
		}
		start := i
		var kind tokKind
		switch {
		case isSpace(c):
			space = true
			i++
			continue
		case c == '-' && next == '-':
			i = skipLineComment(src, i+2)
			space, comment = true, true
			continue
		case c == '/' && next == '*':
			i = skipBlockComment(src, i+2)
			space, comment = true, true
			continue
		case c == '\'':
			kind, i = tkString, skipQuoted(src, i+1, '\'', mode == lenient)
		case c == '"' || (c == '`' && mode == lenient):
			// In PostgreSQL a backtick is an operator character (it ends
			// up as a one-byte token below), not a quote.
			kind, i = tkQuotedIdent, skipQuoted(src, i+1, c, false)
		case c == '$':
			kind, i = lexDollar(src, i)
		case isDigit(c) || (c == '.' && isDigit(next)):
			kind, i = tkNumber, skipNumber(src, i)
		case isIdentStart(c):
			kind, i = lexWord(src, i, mode)
		case c == '?' && !isOpChar(next):
			// A lone '?' is a positional placeholder; "?|" and "?&" stay
			// jsonb operators. A lone '?' is also the jsonb "exists"
			// operator, but that only reaches the fallback when PostgreSQL
			// rejected the statement anyway.
			kind, i = tkPlaceholder, i+1
		case c == ':':
			kind, i = lexColon(src, i)
		case isOpChar(c):
			kind, i = tkOp, skipOperator(src, i)
		case c == '(' || c == ')' || c == '[' || c == ']' || c == '{' || c == '}' || c == ',' || c == ';' || c == '.':
			kind, i = tkPunct, i+1
		default:
			// Control characters, backslashes and the like: keep them as
			// one-byte tokens so that they still shape the fingerprint.
			kind, i = tkOp, i+1
		}
		dst = append(dst, token{start: start, end: i, kind: kind, space: space, comment: comment})
		space, comment = false, false
	}
	return dst
}

// skipLineComment skips to the end of the line; like PostgreSQL, a bare '\r'
// ends it too.
func skipLineComment(src string, i int) int {
	for i < len(src) && src[i] != '\n' && src[i] != '\r' {
		i++
	}
	return i
}

// skipBlockComment skips a block comment whose opening "/*" ends before i.
// Comments nest, as in PostgreSQL; an unterminated one runs to the end.
func skipBlockComment(src string, i int) int {
	depth := 1
	for i < len(src) {
		switch {
		case src[i] == '*' && i+1 < len(src) && src[i+1] == '/':
			depth--
			i += 2
			if depth == 0 {
				return i
			}
		case src[i] == '/' && i+1 < len(src) && src[i+1] == '*':
			depth++
			i += 2
		default:
			i++
		}
	}
	return i
}

// skipQuoted skips past the closing quote q of a quoted item whose body
// starts at i; a doubled quote is an escaped quote. With backslash set, a
// backslash escapes the next byte. That is MySQL's rule and PostgreSQL's rule
// for E'...' strings. The lenient mode applies it to plain strings too: on
// PostgreSQL text that is wrong only when a string ends in a backslash, which
// is rarer than MySQL's 'O\'Brien'.
func skipQuoted(src string, i int, q byte, backslash bool) int {
	for i < len(src) {
		c := src[i]
		switch {
		case backslash && c == '\\':
			i += 2
		case c == q:
			if i+1 < len(src) && src[i+1] == q {
				i += 2
				continue
			}
			return i + 1
		default:
			i++
		}
	}
	return len(src)
}

// lexDollar handles '$': a parameter ($1), a dollar-quoted string
// ($$...$$, $tag$...$tag$) or a lone '$'.
func lexDollar(src string, i int) (tokKind, int) {
	n := len(src)
	j := i + 1
	if j < n && isDigit(src[j]) {
		for j < n && isDigit(src[j]) {
			j++
		}
		return tkParam, j
	}
	for j < n && isIdentCont(src[j]) && src[j] != '$' {
		j++
	}
	if j < n && src[j] == '$' {
		tag := src[i : j+1]
		body := j + 1
		if k := indexString(src[body:], tag); k >= 0 {
			return tkString, body + k + len(tag)
		}
		return tkString, n // unterminated: truncated text
	}
	return tkOp, i + 1
}

// indexString is strings.Index without importing strings into the lexer's
// hot loop; it is only used for dollar-quote tags, which are short.
func indexString(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// skipNumber skips a numeric literal: integers with optional '_' separators,
// decimals, exponents, and 0x/0o/0b prefixed integers.
func skipNumber(src string, i int) int {
	n := len(src)
	if src[i] == '0' && i+2 < n {
		switch src[i+1] {
		case 'x', 'X':
			if isHexDigit(src[i+2]) {
				j := i + 2
				for j < n && (isHexDigit(src[j]) || src[j] == '_') {
					j++
				}
				return j
			}
		case 'o', 'O', 'b', 'B':
			if isDigit(src[i+2]) {
				j := i + 2
				for j < n && (isDigit(src[j]) || src[j] == '_') {
					j++
				}
				return j
			}
		}
	}
	j := i
	for j < n && (isDigit(src[j]) || src[j] == '_') {
		j++
	}
	// A '.' belongs to the number unless it starts "..", which no SQL
	// dialect here uses for numbers but which must not be swallowed.
	if j < n && src[j] == '.' && !(j+1 < n && src[j+1] == '.') {
		j++
		for j < n && (isDigit(src[j]) || src[j] == '_') {
			j++
		}
	}
	if j < n && (src[j] == 'e' || src[j] == 'E') {
		k := j + 1
		if k < n && (src[k] == '+' || src[k] == '-') {
			k++
		}
		if k < n && isDigit(src[k]) {
			for k < n && isDigit(src[k]) {
				k++
			}
			j = k
		}
	}
	return j
}

// lexWord lexes an identifier or keyword, recognising the one-letter string
// prefixes of E'...', N'...', B'...', X'...', U&'...' and U&"...".
func lexWord(src string, i int, mode lexMode) (tokKind, int) {
	n := len(src)
	j := i + 1
	for j < n && isIdentCont(src[j]) {
		j++
	}
	if j == i+1 && j < n {
		switch src[i] {
		case 'e', 'E':
			if src[j] == '\'' {
				return tkString, skipQuoted(src, j+1, '\'', true)
			}
		case 'n', 'N', 'b', 'B', 'x', 'X':
			if src[j] == '\'' {
				return tkString, skipQuoted(src, j+1, '\'', mode == lenient)
			}
		case 'u', 'U':
			if src[j] == '&' && j+1 < n {
				switch src[j+1] {
				case '\'':
					return tkString, skipQuoted(src, j+2, '\'', mode == lenient)
				case '"':
					return tkQuotedIdent, skipQuoted(src, j+2, '"', false)
				}
			}
		}
	}
	return tkWord, j
}

// lexColon separates the "::" cast, MySQL's ":=" and PDO's ":name"
// placeholders from a plain ':' (array slices).
func lexColon(src string, i int) (tokKind, int) {
	n := len(src)
	if i+1 < n {
		switch c := src[i+1]; {
		case c == ':':
			return tkPunct, i + 2
		case c == '=':
			return tkOp, i + 2
		case isIdentStart(c) && (i == 0 || src[i-1] != ':'):
			j := i + 2
			for j < n && isIdentCont(src[j]) {
				j++
			}
			return tkPlaceholder, j
		}
	}
	return tkPunct, i + 1
}

// skipOperator lexes a run of operator characters the way PostgreSQL does:
// the run stops before an embedded comment start, and a multi-character
// operator may not end in '+' or '-' unless it contains one of ~!@#%^&|`?,
// so "=-5" is "=" followed by "-5".
func skipOperator(src string, i int) int {
	n := len(src)
	j := i
	special := false
	for j < n && isOpChar(src[j]) {
		if j > i && ((src[j] == '-' && src[j-1] == '-') || (src[j] == '*' && src[j-1] == '/')) {
			j-- // the previous byte starts a comment
			break
		}
		switch src[j] {
		case '~', '!', '@', '#', '%', '^', '&', '|', '?':
			special = true
		}
		j++
	}
	if j <= i {
		// Cannot happen (a comment start is handled before operators), but
		// always make progress.
		return i + 1
	}
	if !special {
		for j-i > 1 && (src[j-1] == '+' || src[j-1] == '-') {
			j--
		}
	}
	return j
}
