package logql

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// Check reports what makes q no well-formed log query of the raw traces:
// unbalanced braces or an unterminated string, a stream matcher on a label
// the sinks do not set, a selector every matcher of which also matches
// the empty string (Loki refuses it), or a stage it does not know. It is
// a small subset of LogQL — the one this package writes — checked without
// Loki, which cannot be linked in (AGPL). Grafana variables ($name) and
// alert templates ({{ … }}) are read as the values they stand for.
func Check(q string) error {
	q = valueTemplates.ReplaceAllString(q, `="x"`)
	toks, err := lex(templates.ReplaceAllString(q, "x"))
	if err != nil {
		return err
	}
	p := parser{toks: toks}
	if err := p.selector(); err != nil {
		return err
	}
	for !p.done() {
		if err := p.stage(); err != nil {
			return err
		}
	}
	return nil
}

// The alert template actions Label writes: a matcher's whole value, or
// part of a string.
var (
	valueTemplates = regexp.MustCompile(`=\{\{[^}]*\}\}`)
	templates      = regexp.MustCompile(`\{\{[^}]*\}\}`)
)

type token struct {
	kind byte // 's' string (value unquoted), 'i' identifier, 'n' number, 'o' operator, 'p' punctuation
	text string
}

func lex(q string) ([]token, error) {
	var out []token
	depth := 0
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			i++
		case c == '"' || c == '`':
			j := i + 1
			for j < len(q) && q[j] != c {
				if c == '"' && q[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(q) {
				return nil, fmt.Errorf("unterminated string at %q", q[i:])
			}
			s, err := strconv.Unquote(q[i : j+1])
			if err != nil {
				return nil, fmt.Errorf("bad string %s: %w", q[i:j+1], err)
			}
			out = append(out, token{'s', s})
			i = j + 1
		case c == '{' || c == '}' || c == ',':
			if c == '{' {
				depth++
			} else if c == '}' {
				depth--
			}
			if depth < 0 {
				return nil, fmt.Errorf("unbalanced } at %q", q[i:])
			}
			out = append(out, token{'p', string(c)})
			i++
		case strings.ContainsRune("|=!~<>", rune(c)):
			j := i + 1
			for j < len(q) && strings.ContainsRune("=~>", rune(q[j])) {
				j++
			}
			out = append(out, token{'o', q[i:j]})
			i = j
		case c == '_' || unicode.IsLetter(rune(c)) || unicode.IsDigit(rune(c)) || c == '.':
			j := i
			for j < len(q) && (q[j] == '_' || q[j] == '.' || unicode.IsLetter(rune(q[j])) || unicode.IsDigit(rune(q[j]))) {
				j++
			}
			kind := byte('i')
			if unicode.IsDigit(rune(c)) || c == '.' {
				kind = 'n'
			}
			out = append(out, token{kind, q[i:j]})
			i = j
		default:
			return nil, fmt.Errorf("unexpected %q at %q", c, q[i:])
		}
	}
	if depth != 0 {
		return nil, fmt.Errorf("%d unclosed {", depth)
	}
	return out, nil
}

type parser struct {
	toks []token
	i    int
}

func (p *parser) done() bool { return p.i >= len(p.toks) }

func (p *parser) next() token {
	if p.done() {
		return token{}
	}
	t := p.toks[p.i]
	p.i++
	return t
}

func (p *parser) peek() token {
	if p.done() {
		return token{}
	}
	return p.toks[p.i]
}

// matcher reads name op value; ops lists the operators allowed.
func (p *parser) matcher(ops ...string) (name, op string, v token, err error) {
	n, o, v := p.next(), p.next(), p.next()
	if n.kind != 'i' {
		return "", "", v, fmt.Errorf("want a label name, got %q", n.text)
	}
	if o.kind != 'o' || !slices.Contains(ops, o.text) {
		return "", "", v, fmt.Errorf("%s: want one of %v, got %q", n.text, ops, o.text)
	}
	if v.kind != 's' && v.kind != 'n' {
		return "", "", v, fmt.Errorf("%s%s: want a value, got %q", n.text, o.text, v.text)
	}
	return n.text, o.text, v, nil
}

func (p *parser) selector() error {
	if t := p.next(); t.text != "{" {
		return fmt.Errorf("a log query starts with a stream selector {…}, not %q", t.text)
	}
	nonEmpty := false
	for {
		name, op, v, err := p.matcher("=", "!=", "=~", "!~")
		if err != nil {
			return err
		}
		if v.kind != 's' {
			return fmt.Errorf("%s%s: a stream matcher compares with a string", name, op)
		}
		if !slices.Contains(StreamLabels, name) {
			return fmt.Errorf("stream label %q is none of %v", name, StreamLabels)
		}
		if op == "=~" || op == "!~" {
			if _, err := regexp.Compile(v.text); err != nil {
				return fmt.Errorf("%s%s: %w", name, op, err)
			}
		}
		switch op {
		case "=":
			nonEmpty = nonEmpty || v.text != ""
		case "=~":
			nonEmpty = nonEmpty || !strings.Contains(v.text, "$") && !regexp.MustCompile("^(?:"+v.text+")$").MatchString("")
		}
		switch t := p.next(); t.text {
		case ",":
			continue
		case "}":
			if !nonEmpty {
				return fmt.Errorf("every matcher of the selector matches the empty string")
			}
			return nil
		default:
			return fmt.Errorf("want , or } in the selector, got %q", t.text)
		}
	}
}

func (p *parser) stage() error {
	t := p.next()
	switch t.text {
	case "|=", "!=", "|~", "!~":
		v := p.next()
		if v.kind != 's' {
			return fmt.Errorf("line filter %s wants a string, got %q", t.text, v.text)
		}
		if t.text == "|~" || t.text == "!~" {
			if _, err := regexp.Compile(strings.ReplaceAll(v.text, "$", "")); err != nil {
				return fmt.Errorf("line filter %s: %w", t.text, err)
			}
		}
		return nil
	case "|":
	default:
		return fmt.Errorf("want a stage (| or a line filter), got %q", t.text)
	}
	if n := p.peek(); n.kind == 'i' && (n.text == "json" || n.text == "logfmt") {
		p.next()
		return nil
	}
	_, _, _, err := p.matcher("=", "!=", "=~", "!~", ">", ">=", "<", "<=", "==")
	return err
}
