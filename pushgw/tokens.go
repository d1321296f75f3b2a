package pushgw

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"
)

// MinTokenBytes is the shortest token a tokens file may hold in the clear:
// a guessable token would let anyone write a project's series.
const MinTokenBytes = 16

// hashPrefix marks a token given as the hex SHA-256 of the token.
const hashPrefix = "sha256:"

// projectName is what a project may be called: it becomes the project
// label and the Loki tenant.
var projectName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// Tokens maps push tokens to the one project each authenticates. It holds
// only the tokens' SHA-256, and a lookup compares the presented token's
// hash with every entry in constant time. A Tokens is never changed after
// it is built, so it is safe for concurrent use.
type Tokens struct {
	entries []tokenEntry
}

type tokenEntry struct {
	project string
	hash    [sha256.Size]byte
}

// tokensFile is the YAML of --pushgw.tokens-file.
type tokensFile struct {
	Projects map[string]string `yaml:"projects"`
}

// ParseTokens reads a tokens file: a map `projects:` of project name to
// its token, either the token itself (at least MinTokenBytes) or
// "sha256:<64 hex digits>" of it. Unknown keys, a bad project name and two
// projects with one token are errors.
func ParseTokens(b []byte) (*Tokens, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var f tokensFile
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("cannot parse the tokens file: %w", err)
	}
	if len(f.Projects) == 0 {
		return nil, errors.New("the tokens file names no project (projects: {name: token})")
	}
	names := make([]string, 0, len(f.Projects))
	for name := range f.Projects {
		names = append(names, name)
	}
	sort.Strings(names)
	t := &Tokens{}
	owner := map[[sha256.Size]byte]string{}
	for _, name := range names {
		if !projectName.MatchString(name) {
			return nil, fmt.Errorf("project name %q: want 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit", name)
		}
		h, err := tokenHash(f.Projects[name])
		if err != nil {
			return nil, fmt.Errorf("project %q: %w", name, err)
		}
		if other, dup := owner[h]; dup {
			return nil, fmt.Errorf("projects %q and %q have the same token: a token must name one project", other, name)
		}
		owner[h] = name
		t.entries = append(t.entries, tokenEntry{project: name, hash: h})
	}
	return t, nil
}

// tokenHash is the SHA-256 a token entry stands for.
func tokenHash(v string) ([sha256.Size]byte, error) {
	var h [sha256.Size]byte
	if hexed, ok := strings.CutPrefix(v, hashPrefix); ok {
		b, err := hex.DecodeString(hexed)
		if err != nil || len(b) != sha256.Size {
			return h, fmt.Errorf("%q: want %s followed by the 64 hex digits of the token's SHA-256", v, hashPrefix)
		}
		copy(h[:], b)
		return h, nil
	}
	if len(v) < MinTokenBytes {
		return h, fmt.Errorf("the token has %d bytes; want at least %d (or %s<hex>)", len(v), MinTokenBytes, hashPrefix)
	}
	return sha256.Sum256([]byte(v)), nil
}

// Project is the project token authenticates, or false. Every entry is
// compared, so the time taken says nothing about which entry matched or
// how much of a hash did.
func (t *Tokens) Project(token string) (string, bool) {
	if t == nil || token == "" {
		return "", false
	}
	h := sha256.Sum256([]byte(token))
	found := -1
	for i := range t.entries {
		if subtle.ConstantTimeCompare(h[:], t.entries[i].hash[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return "", false
	}
	return t.entries[found].project, true
}

// Projects are the projects the tokens name, sorted.
func (t *Tokens) Projects() []string {
	out := make([]string, len(t.entries))
	for i, e := range t.entries {
		out[i] = e.project
	}
	return out
}

// TokenSource keeps the tokens of one file, read again by Reload (on
// SIGHUP) and by Watch when the file changes. A file that no longer parses
// leaves the previous tokens in force. Safe for concurrent use.
type TokenSource struct {
	path    string
	current atomic.Pointer[Tokens]

	mu     sync.Mutex
	stat   fileStamp
	onLoad func(err error) // called after each reload attempt
}

// fileStamp is what tells a changed file apart without reading it.
type fileStamp struct {
	size    int64
	modTime time.Time
	ino     uint64
}

// NewTokenSource reads path; a missing or invalid file is an error, so the
// gateway never starts without tokens. onLoad (may be nil) learns of each
// later reload, nil for a success.
func NewTokenSource(path string, onLoad func(err error)) (*TokenSource, error) {
	if onLoad == nil {
		onLoad = func(error) {}
	}
	s := &TokenSource{path: path, onLoad: onLoad}
	if err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

// Tokens is the tokens in force.
func (s *TokenSource) Tokens() *Tokens { return s.current.Load() }

// Reload reads the file again. On an error the tokens in force stay.
func (s *TokenSource) Reload() error {
	err := s.load()
	s.onLoad(err)
	return err
}

func (s *TokenSource) load() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := stampOf(s.path)
	if err != nil {
		return fmt.Errorf("cannot read the tokens file %s: %w", s.path, err)
	}
	b, err := os.ReadFile(s.path)
	if err != nil {
		return fmt.Errorf("cannot read the tokens file %s: %w", s.path, err)
	}
	t, err := ParseTokens(b)
	if err != nil {
		return fmt.Errorf("%s: %w", s.path, err)
	}
	s.current.Store(t)
	s.stat = st
	return nil
}

// changed reports whether the file differs from what was last loaded (or
// tried to be: a broken file is not read again until it changes).
func (s *TokenSource) changed() bool {
	st, err := stampOf(s.path)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil || st == s.stat {
		return false
	}
	s.stat = st
	return true
}

// Watch reloads the file whenever it changes, checking every interval
// until done is closed.
func (s *TokenSource) Watch(done <-chan struct{}, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
			if s.changed() {
				_ = s.Reload()
			}
		}
	}
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	st := fileStamp{size: fi.Size(), modTime: fi.ModTime()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = sys.Ino
	}
	return st, nil
}
