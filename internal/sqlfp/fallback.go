package sqlfp

import (
	"strconv"
	"strings"
)

// maxNesting bounds the recursion of the list collapser. Deeper brackets are
// still tokens; they are just not collapsed, so a hostile "((((…" cannot
// grow the goroutine stack without bound.
const maxNesting = 64

// isValue reports whether a token stands for a value that the fingerprint
// ignores: literals, parameters, placeholders and the boolean keywords
// (PostgreSQL's fingerprint ignores booleans too; NULL stays a keyword).
func isValue(src string, t token) bool {
	switch t.kind {
	case tkString, tkNumber, tkParam, tkPlaceholder:
		return true
	case tkWord:
		w := src[t.start:t.end]
		return asciiEqualFold(w, "true") || asciiEqualFold(w, "false")
	}
	return false
}

// unaryContextWords are keywords after which '-' or '+' must be a sign, as in
// "SELECT -1" or "THEN -1". After any other word it is binary ("a - 1").
var unaryContextWords = []string{
	"and", "between", "by", "case", "else", "in", "is", "like", "ilike", "limit",
	"not", "offset", "on", "or", "return", "returning", "select", "set", "then",
	"values", "when", "where",
}

// foldSigns merges a unary '+' or '-' into the number after it, so that
// "x = -5" and "x = 5" have one shape, as they do for PostgreSQL's parser.
func foldSigns(src string, toks []token) []token {
	out := toks[:0]
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		if t.kind == tkOp && t.end-t.start == 1 && (src[t.start] == '-' || src[t.start] == '+') &&
			i+1 < len(toks) && toks[i+1].kind == tkNumber && signContext(src, out) {
			num := toks[i+1]
			num.start, num.space, num.comment = t.start, t.space, t.comment
			out = append(out, num)
			i++
			continue
		}
		out = append(out, t)
	}
	return out
}

// signContext reports whether a sign at the end of prev would be unary.
func signContext(src string, prev []token) bool {
	if len(prev) == 0 {
		return true
	}
	p := prev[len(prev)-1]
	switch p.kind {
	case tkOp:
		return true
	case tkPunct:
		c := src[p.start]
		return c == '(' || c == '[' || c == ',' || c == ';' || c == '{'
	case tkWord:
		if isValue(src, p) {
			return false
		}
		w := src[p.start:p.end]
		for _, k := range unaryContextWords {
			if asciiEqualFold(w, k) {
				return true
			}
		}
	}
	return false
}

// collapser rewrites a token stream so that lists which differ only in how
// many equal-shaped items they hold become one shape: "IN (1,2,3)" becomes
// "IN (1)", "VALUES (1,2),(3,4)" becomes "VALUES (1)". Two items have the
// same shape when their tokens are equal after literals are treated as one
// value, which is also what PostgreSQL's fingerprint does, since it ignores
// constants altogether.
type collapser struct {
	src   string
	toks  []token
	out   []token
	depth int
}

type stopReason uint8

const (
	stopComma stopReason = iota + 1
	stopCloser
	stopEOF
)

func (c *collapser) punct(i int, ch byte) bool {
	t := c.toks[i]
	return t.kind == tkPunct && t.end-t.start == 1 && c.src[t.start] == ch
}

func closerFor(ch byte) byte {
	if ch == '(' {
		return ')'
	}
	return ']'
}

// list processes the comma-separated items of one bracket level, starting at
// token i, until the closer (0 at top level) or the end of input. An item
// equal in shape to the item kept before it is dropped with its comma; so is
// a last item cut off by the end of the text if it is a prefix of the one
// before it, which makes a list truncated in mid-item look like the whole
// list. It returns the index after the closer.
func (c *collapser) list(i int, closer byte) int {
	prevStart, prevEnd := -1, -1
	for {
		commaAt := len(c.out) - 1 // the comma appended before this item, if any
		itemStart := len(c.out)
		var stop stopReason
		i, stop = c.item(i, closer)
		itemEnd := len(c.out)
		item := c.out[itemStart:itemEnd]
		if prevStart >= 0 {
			prev := c.out[prevStart:prevEnd]
			if c.sameShape(prev, item) || (stop == stopEOF && c.isPrefix(item, prev)) {
				c.out = c.out[:commaAt]
				itemStart = -1
			}
		}
		if itemStart >= 0 {
			prevStart, prevEnd = itemStart, itemEnd
		}
		switch stop {
		case stopComma:
			c.out = append(c.out, c.toks[i])
			i++
		case stopCloser:
			c.out = append(c.out, c.toks[i])
			return i + 1
		default:
			return i
		}
	}
}

// item copies one list item to c.out, descending into brackets and VALUES
// row lists, and reports what ended it.
func (c *collapser) item(i int, closer byte) (int, stopReason) {
	for i < len(c.toks) {
		t := c.toks[i]
		if t.kind == tkPunct {
			ch := c.src[t.start]
			switch {
			case ch == ',':
				return i, stopComma
			case ch == closer && closer != 0:
				return i, stopCloser
			case (ch == '(' || ch == '[') && c.depth < maxNesting:
				c.out = append(c.out, t)
				c.depth++
				i = c.list(i+1, closerFor(ch))
				c.depth--
				continue
			}
		}
		c.out = append(c.out, t)
		i++
		if t.kind == tkWord && asciiEqualFold(c.src[t.start:t.end], "values") {
			i = c.rows(i)
		}
	}
	return i, stopEOF
}

// rows handles the row list after VALUES: "(…), (…), …". Rows are separated
// by commas at the level of VALUES itself, so list would see them as items
// glued to the statement before them; they get their own pass.
func (c *collapser) rows(i int) int {
	prevStart, prevEnd := -1, -1
	for i < len(c.toks) && c.punct(i, '(') && c.depth < maxNesting {
		commaAt := len(c.out) - 1
		rowStart := len(c.out)
		c.out = append(c.out, c.toks[i])
		c.depth++
		i = c.list(i+1, ')')
		c.depth--
		row := c.out[rowStart:]
		if prevStart >= 0 {
			prev := c.out[prevStart:prevEnd]
			if c.sameShape(prev, row) || (i >= len(c.toks) && c.isPrefix(row, prev)) {
				c.out = c.out[:commaAt]
				rowStart = -1
			}
		}
		if rowStart >= 0 {
			prevStart, prevEnd = rowStart, len(c.out)
		}
		if i < len(c.toks) && c.punct(i, ',') {
			if i+1 >= len(c.toks) {
				return i + 1 // a trailing comma where the text was cut
			}
			if c.punct(i+1, '(') {
				c.out = append(c.out, c.toks[i])
				i++
				continue
			}
		}
		break
	}
	return i
}

func (c *collapser) sameToken(a, b token) bool {
	av, bv := isValue(c.src, a), isValue(c.src, b)
	if av || bv {
		return av && bv
	}
	if hashKind(a.kind) != hashKind(b.kind) {
		return false
	}
	// Compare exactly what hashTokens hashes, so that tokens judged equal
	// here can never hash differently.
	sa, sb := hashText(c.src, a), hashText(c.src, b)
	if len(sa) != len(sb) {
		return false
	}
	la, lb := a.kind == tkWord, b.kind == tkWord
	for i := 0; i < len(sa); i++ {
		if lowerIf(sa[i], la) != lowerIf(sb[i], lb) {
			return false
		}
	}
	return true
}

func lowerIf(c byte, lower bool) byte {
	if lower && c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func (c *collapser) sameShape(a, b []token) bool {
	if len(a) != len(b) {
		return false
	}
	return c.isPrefix(a, b)
}

// isPrefix reports whether a is a prefix of b in shape.
func (c *collapser) isPrefix(a, b []token) bool {
	if len(a) > len(b) {
		return false
	}
	for i := range a {
		if !c.sameToken(a[i], b[i]) {
			return false
		}
	}
	return true
}

// hashKind maps token kinds to the class that is hashed: quoted and unquoted
// identifiers share one class so that "users" and users (and `users`) match.
func hashKind(k tokKind) byte {
	switch k {
	case tkWord, tkQuotedIdent:
		return 'w'
	default:
		return 'o'
	}
}

// hashText is the part of a token that is hashed: a quoted identifier
// without its quotes (PostgreSQL folds unquoted names to lower case and keeps
// quoted ones as written, so lower-casing words gives the same equivalence).
func hashText(src string, t token) string {
	s := src[t.start:t.end]
	if t.kind == tkQuotedIdent {
		if len(s) >= 2 && (s[0] == 'U' || s[0] == 'u') {
			s = s[2:] // U&"..."
		}
		if len(s) > 0 {
			q := s[0]
			s = s[1:]
			if len(s) > 0 && s[len(s)-1] == q {
				s = s[:len(s)-1]
			}
		}
	}
	return s
}

// fnv64 is FNV-1a, 64-bit. A fixed, seedless hash keeps fallback
// fingerprints stable across processes and releases, which hash/maphash
// cannot promise.
type fnv64 uint64

const (
	fnvOffset fnv64 = 14695981039346656037
	fnvPrime  fnv64 = 1099511628211
)

func (h *fnv64) byte(b byte) {
	*h = (*h ^ fnv64(b)) * fnvPrime
}

func (h *fnv64) lower(s string) {
	for i := 0; i < len(s); i++ {
		h.byte(lowerIf(s[i], true))
	}
}

func (h *fnv64) str(s string) {
	for i := 0; i < len(s); i++ {
		h.byte(s[i])
	}
}

// fallback fingerprints a statement that PostgreSQL's parser rejected. toks
// are the lexed tokens of sql; they are modified.
func fallback(sql string, toks []token) Result {
	toks = foldSigns(sql, toks)
	if len(toks) == 0 {
		return Result{Fingerprint: EmptyFingerprint, Fallback: true}
	}
	c := collapser{src: sql, toks: toks, out: make([]token, 0, len(toks))}
	c.list(0, 0)
	// list stops at stray closers only through item, which copies them, so
	// every token has been consumed here.
	return Result{
		Fingerprint: hashTokens(sql, c.out),
		Normalized:  renderTokens(sql, c.out, true),
		Fallback:    true,
	}
}

// hashTokens hashes the shape of a token stream: one class byte per token,
// the lower-cased text of words and operators, and a separator byte that
// cannot occur in UTF-8 so that token boundaries are part of the hash.
func hashTokens(src string, toks []token) string {
	h := fnvOffset
	for _, t := range toks {
		if isValue(src, t) {
			h.byte('v')
		} else {
			k := hashKind(t.kind)
			h.byte(k)
			if k == 'w' && t.kind == tkWord {
				h.lower(hashText(src, t))
			} else {
				h.str(hashText(src, t))
			}
		}
		h.byte(0xff)
	}
	return hex16(uint64(h))
}

func hex16(v uint64) string {
	const digits = "0123456789abcdef"
	var b [16]byte
	for i := 15; i >= 0; i-- {
		b[i] = digits[v&0xf]
		v >>= 4
	}
	return string(b[:])
}

// renderTokens builds the Normalized text of a token stream: tokens as
// written (case kept for readability), one space wherever the source had
// whitespace or a comment, and with values set, values replaced by $n.
// Existing $n parameters keep their numbers and new ones continue after the
// highest, as pg_query.Normalize does. It stops early once the text is over
// the limit.
func renderTokens(src string, toks []token, values bool) string {
	next := 1
	for _, t := range toks {
		if t.kind == tkParam {
			if n, err := strconv.Atoi(src[t.start+1 : t.end]); err == nil && n >= next && n < 1<<30 {
				next = n + 1
			}
		}
	}
	var b strings.Builder
	b.Grow(min(len(src), MaxNormalizedLen+8))
	var num [20]byte
	for i, t := range toks {
		if b.Len() > MaxNormalizedLen {
			break
		}
		if i > 0 && t.space && !(t.comment && tight(src[toks[i-1].end-1], src[t.start])) {
			b.WriteByte(' ')
		}
		if values && t.kind != tkParam && isValue(src, t) {
			b.WriteByte('$')
			b.Write(strconv.AppendInt(num[:0], int64(next), 10))
			next++
			continue
		}
		b.WriteString(src[t.start:t.end])
	}
	return truncate(b.String())
}

// asciiEqualFold compares ASCII case-insensitively; PostgreSQL folds only
// ASCII letters of unquoted identifiers.
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x >= 'A' && x <= 'Z' {
			x += 'a' - 'A'
		}
		if y >= 'A' && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// tight reports whether no space is needed between a token ending in prev and
// one starting with next. It is only consulted where a removed comment was
// the separation, so "f(/*x*/1)" renders as "f($1)" and "a/**/b" as "a b",
// while spacing the author typed is kept as it was.
func tight(prev, next byte) bool {
	switch next {
	case ',', ')', ']', ';', '.':
		return true
	}
	return prev == '(' || prev == '[' || prev == '.'
}
