package pushgw

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func sha(token string) string {
	h := sha256.Sum256([]byte(token))
	return "sha256:" + hex.EncodeToString(h[:])
}

func TestParseTokens(t *testing.T) {
	good := "projects:\n  shop: shop-token-0123456789\n  blog: " + sha("blog-token-0123456789") + "\n"
	tokens, err := ParseTokens([]byte(good))
	if err != nil {
		t.Fatalf("ParseTokens: %v", err)
	}
	for _, c := range []struct{ token, project string }{
		{"shop-token-0123456789", "shop"},
		{"blog-token-0123456789", "blog"},
		{sha("blog-token-0123456789"), ""}, // the hash itself is no token
		{"shop-token-012345678", ""},
		{"", ""},
	} {
		got, ok := tokens.Project(c.token)
		if got != c.project || ok != (c.project != "") {
			t.Errorf("Project(%q) = %q, %v; want %q", c.token, got, ok, c.project)
		}
	}
	if got := strings.Join(tokens.Projects(), ","); got != "blog,shop" {
		t.Errorf("Projects() = %s; want blog,shop", got)
	}

	for _, c := range []struct{ name, file, want string }{
		{"empty", "", "names no project"},
		{"no projects", "projects: {}\n", "names no project"},
		{"unknown key", "projects: {shop: shop-token-0123456789}\ntenants: {}\n", "field tenants not found"},
		{"short token", "projects: {shop: short}\n", "at least 16"},
		{"bad hash", "projects: {shop: 'sha256:abcd'}\n", "64 hex digits"},
		{"bad name", "projects: {'shop/x': shop-token-0123456789}\n", "project name"},
		{"shared token", "projects: {a: same-token-0123456789, b: same-token-0123456789}\n", "same token"},
		{"shared via hash", "projects: {a: same-token-0123456789, b: '" + sha("same-token-0123456789") + "'}\n", "same token"},
		{"not yaml", "projects: [\n", "cannot parse"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseTokens([]byte(c.file))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v; want an error with %q", err, c.want)
			}
		})
	}
}

func TestTokenSourceReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.yml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := NewTokenSource(path, nil); err == nil {
		t.Fatal("NewTokenSource of a missing file: got no error")
	}
	write("projects: {shop: first-token-0123456789}\n")
	loads := make(chan error, 10)
	src, err := NewTokenSource(path, func(err error) { loads <- err })
	if err != nil {
		t.Fatalf("NewTokenSource: %v", err)
	}
	if p, _ := src.Tokens().Project("first-token-0123456789"); p != "shop" {
		t.Fatalf("first token: got project %q; want shop", p)
	}

	// A broken file keeps the tokens in force.
	write("projects: {shop: short}\n")
	if err := src.Reload(); err == nil {
		t.Fatal("Reload of a broken file: got no error")
	}
	<-loads
	if p, _ := src.Tokens().Project("first-token-0123456789"); p != "shop" {
		t.Errorf("after a broken reload: got project %q; want shop", p)
	}

	// Watch picks up a changed file.
	done := make(chan struct{})
	defer close(done)
	go src.Watch(done, 10*time.Millisecond)
	write("projects: {shop: second-token-0123456789, blog: blog-token-0123456789}\n")
	deadline := time.After(10 * time.Second)
	for {
		if p, _ := src.Tokens().Project("second-token-0123456789"); p == "shop" {
			break
		}
		select {
		case <-deadline:
			t.Fatal("Watch did not load the changed file")
		case <-time.After(10 * time.Millisecond):
		}
	}
	if _, ok := src.Tokens().Project("first-token-0123456789"); ok {
		t.Error("the replaced token still authenticates")
	}
}
