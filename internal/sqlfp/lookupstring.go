package sqlfp

import "unsafe"

// LookupString is Lookup for a text the caller holds as a string. It views
// the string's bytes without copying them; Lookup never writes to or keeps
// its argument, so the view is safe.
func (c *Cache) LookupString(sql string) Result {
	return c.Lookup(unsafe.Slice(unsafe.StringData(sql), len(sql)))
}
