package top

import (
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// width is the terminal width the table fits in.
const width = 100

// cut shortens s to n runes, marking the cut with "...".
func cut(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-3]) + "..."
}

func pad(s string, n int) string {
	s = cut(s, n)
	return s + strings.Repeat(" ", max(n-utf8.RuneCountInString(s), 0))
}

// section starts a category: a blank line, its title and column heads
// (each 14 columns wide, as the figures below them), and "(nothing grew)"
// when empty.
func section(b *strings.Builder, title string, empty bool, columns ...string) {
	fmt.Fprintf(b, "\n%-38sscore  ", title+" (baseline->window)")
	for i, c := range columns {
		if i < len(columns)-1 {
			c = fmt.Sprintf("%-14s", c)
		}
		b.WriteString(c)
	}
	b.WriteString("\n")
	if empty {
		b.WriteString("  (nothing grew)\n")
	}
}

func change(base, win float64) string { return fmt.Sprintf("%.2f->%.2f", base, win) }

// Table writes the report for a terminal of 100 columns.
func (r *Report) Table(w io.Writer) error {
	var b strings.Builder
	tf := "2006-01-02 15:04:05"
	fmt.Fprintf(&b, "%s\n", wrap(fmt.Sprintf("Offenders of %s -> %s (%s), against the %s before",
		r.Window.From.Format(tf), r.Window.To.Format("15:04:05 MST"), dur(r.Window.Seconds), dur(r.Baseline.Seconds)), width))
	fmt.Fprintf(&b, "%s\n", wrap("Verdict: "+r.Verdict, width))
	if r.LogQL != "" {
		fmt.Fprintf(&b, "%s\n", wrapWords(append([]string{"Raw", "traces", "(LogQL):"}, queryWords(r.LogQL)...), width))
	}
	for _, warn := range r.Warnings {
		fmt.Fprintf(&b, "%s\n", wrap("Warning: "+warn, width))
	}
	// Figures are baseline->window.
	section(&b, "ENDPOINTS", len(r.Endpoints) == 0, "CPU s/s", "busy workers", "abandoned/min")
	for _, e := range r.Endpoints {
		fmt.Fprintf(&b, "  %s %+7.2f  %-13s %-13s %s\n", pad(e.Name, 34), e.Score, change(e.Baseline.CPU, e.Window.CPU),
			change(e.Baseline.busy(), e.Window.busy()), change(e.Baseline.Abandoned, e.Window.Abandoned))
	}
	section(&b, "FUNCTIONS", len(r.Functions) == 0, "CPU s/s", "busy workers")
	for _, f := range r.Functions {
		fmt.Fprintf(&b, "  %s %+7.2f  %-13s %s\n", pad(f.Name, 34), f.Score, change(f.Baseline.CPU, f.Window.CPU), change(f.Baseline.Wall, f.Window.Wall))
		if f.Caller != "" {
			fmt.Fprintf(&b, "    %s\n", cut("called from "+f.Caller, width-4))
		}
	}
	section(&b, "QUERIES", len(r.Queries) == 0, "PHP s/s", "DB sessions", "DB exec s/s")
	for _, q := range r.Queries {
		fmt.Fprintf(&b, "  %s %+7.2f  %-13s %-13s %s\n", pad(q.QueryFP, 34), q.Score, change(q.Baseline.PHP, q.Window.PHP),
			change(q.Baseline.Sessions, q.Window.Sessions), change(q.Baseline.Exec, q.Window.Exec))
		text := q.Name
		if text == "" {
			text = "(text unknown)"
		}
		if q.TopEndpoint != "" {
			text += "  <- " + q.TopEndpoint
		}
		fmt.Fprintf(&b, "    %s\n", cut(strings.Join(strings.Fields(text), " "), width-4))
	}
	section(&b, "DATABASE WAITS", len(r.Waits) == 0, "active sessions")
	for _, x := range r.Waits {
		fmt.Fprintf(&b, "  %s %+7.2f  %s\n", pad(x.Name, 34), x.Score, change(x.Baseline.Sessions, x.Window.Sessions))
	}
	section(&b, "PROCESSES", len(r.Processes) == 0 && r.hostSeen, "cores", "running", "D tasks")
	if !r.hostSeen {
		b.WriteString("  (no host metrics in the window: the agent's host collector is off, or the agent is not scraped)\n")
	}
	for _, p := range r.Processes {
		fmt.Fprintf(&b, "  %s %+7.2f  %-13s %-13s %s\n", pad(p.Name+" ("+p.Group+")", 34), p.Score, change(p.Baseline.CPU, p.Window.CPU),
			change(p.Baseline.Running, p.Window.Running), change(p.Baseline.Uninterruptible, p.Window.Uninterruptible))
	}
	section(&b, "MEMORY", len(r.Memory) == 0, "peak MiB", "memory_limit/min")
	for _, m := range r.Memory {
		fmt.Fprintf(&b, "  %s %+7.2f  %-13s %s\n", pad(m.Name, 34), m.Score,
			fmt.Sprintf("%.1f->%.1f", m.Baseline.PeakBytes/mib, m.Window.PeakBytes/mib), change(m.Baseline.MemoryLimit, m.Window.MemoryLimit))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func dur(seconds float64) string {
	return (time.Duration(seconds) * time.Second).String()
}

// wrap breaks s into lines of at most n runes at spaces, indenting the
// continuation lines.
func wrap(s string, n int) string { return wrapWords(strings.Fields(s), n) }

// queryWords splits a LogQL query at the spaces outside its string
// literals: broken there, it reads the same in logcli or Explore (a line
// break is a space to LogQL; one inside a string is not).
func queryWords(q string) []string {
	var words []string
	start, quote := 0, rune(0)
	for i, c := range q {
		switch {
		case quote != 0:
			if c == quote && (quote == '`' || !escaped(q, i)) {
				quote = 0
			}
		case c == '"' || c == '`':
			quote = c
		case c == ' ':
			if i > start {
				words = append(words, q[start:i])
			}
			start = i + 1
		}
	}
	if start < len(q) {
		words = append(words, q[start:])
	}
	return words
}

// escaped says whether the byte at i is preceded by an odd number of
// backslashes.
func escaped(s string, i int) bool {
	n := 0
	for j := i - 1; j >= 0 && s[j] == '\\'; j-- {
		n++
	}
	return n%2 == 1
}

// wrapWords joins words into lines of at most n runes, indenting the
// continuation lines; a word longer than a line is left whole.
func wrapWords(words []string, n int) string {
	var lines []string
	line := ""
	for _, word := range words {
		switch {
		case line == "":
			line = word
		case utf8.RuneCountInString(line)+1+utf8.RuneCountInString(word) > n:
			lines = append(lines, line)
			line = "  " + word
		default:
			line += " " + word
		}
	}
	if line != "" {
		lines = append(lines, line)
	}
	return strings.Join(lines, "\n")
}
