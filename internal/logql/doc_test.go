package logql

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/bitville/bitville-apm/internal/rawtrace"
)

const doc = "../../docs/raw-traces.md"

// docSearches are the ready searches of docs/raw-traces.md, with the
// example values the page uses.
func docSearches() []string {
	shop, ep := Is("shop"), Is("GET /orders/{id}")
	return []string{
		SlowestRequests(shop, ep),
		Correlation(Is("4f1c2a9e7b3d4c10")),
		RequestsOfQuery(shop, Is("a1b2c3d4e5f60718")),
		Abandoned(shop, Is("GET /report")),
		FailedRequests(shop, ep),
		FailedWith(shop, Is("PDOException")),
		CallSites(shop, ep),
		LockTreesBlockedBy(ep),
		LockTrees(Is("db1:5432/shop"), Is("shop")),
		Trace(Is("4bf92f3577b34da6a3ce929d0e0e4736")),
		Request(Is("9c2e7f0a51d34b8e")),
		ForcedRequests(shop, Is("")),
		Profiles(shop, ep),
		Activity(Is("db1:5432/shop")),
		FPMReports(shop),
	}
}

var logqlBlock = regexp.MustCompile("(?s)```logql\n(.*?)\n```")

// The searches in docs/raw-traces.md are the ones this package writes,
// and every one of them is there.
func TestDocSearches(t *testing.T) {
	b, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	inDoc := map[string]bool{}
	for _, m := range logqlBlock.FindAllStringSubmatch(string(b), -1) {
		inDoc[m[1]] = true
	}
	want := map[string]bool{}
	for _, q := range docSearches() {
		want[q] = true
		if !inDoc[q] {
			t.Errorf("%s lacks, in a ```logql block:\n%s", doc, q)
		}
		if err := Check(q); err != nil {
			t.Errorf("%s: %v", q, err)
		}
	}
	for q := range inDoc {
		if !want[q] {
			t.Errorf("%s has a search internal/logql does not write (update the page from docSearches):\n%s", doc, q)
		}
	}
	if len(want) < 10 {
		t.Errorf("%d searches; the page promises ten at least", len(want))
	}
}

// Every flag of rawtrace.Config is in the page's flag table with its
// default.
func TestDocFlags(t *testing.T) {
	b, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if m := regexp.MustCompile("^\\| `--([a-z0-9.-]+)`").FindStringSubmatch(line); m != nil {
			rows[m[1]] = line
		}
	}
	var walk func(typ reflect.Type, prefix string)
	walk = func(typ reflect.Type, prefix string) {
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			if _, ok := f.Tag.Lookup("embed"); ok {
				walk(f.Type, prefix+f.Tag.Get("prefix"))
				continue
			}
			name := prefix + f.Tag.Get("name")
			row, ok := rows[name]
			if !ok {
				t.Errorf("%s: no row for --%s", doc, name)
				continue
			}
			if d := f.Tag.Get("default"); d != "" && !strings.Contains(row, "`"+d+"`") {
				t.Errorf("%s: the row of --%s does not give its default `%s`: %s", doc, name, d, row)
			}
		}
	}
	walk(reflect.TypeOf(rawtrace.Config{}), "")
}
