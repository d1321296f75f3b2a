package labelset

// Truncate cuts a label value (or any text kept for people to read) to at
// most max bytes on a rune boundary, marking the cut with "…".
func Truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	i := max - len("…")
	for i > 0 && s[i]&0xC0 == 0x80 {
		i--
	}
	return s[:i] + "…"
}
