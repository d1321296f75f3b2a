package compose

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
)

func checkBuild(t *testing.T, root, name string, b *types.BuildConfig) {
	t.Helper()
	ctxDir := b.Context
	if st, err := os.Stat(ctxDir); err != nil || !st.IsDir() {
		t.Errorf("service %s: build context %s is not a directory: %v", name, ctxDir, err)
		return
	}
	if !inside(root, ctxDir) {
		t.Errorf("service %s: build context %s is outside the repository", name, ctxDir)
	}
	df := dockerfilePath(b)
	steps, err := parseDockerfile(df)
	if err != nil {
		t.Errorf("service %s: %v", name, err)
		return
	}
	ignore, ignoreFile := dockerignore(df, ctxDir)
	for _, s := range steps {
		if (s.Instruction != "COPY" && s.Instruction != "ADD") || s.From != "" {
			continue
		}
		for _, src := range s.Sources {
			if strings.Contains(src, "://") {
				continue
			}
			matches, _ := filepath.Glob(filepath.Join(ctxDir, filepath.FromSlash(src)))
			if len(matches) == 0 {
				t.Errorf("service %s: %s line %d copies %s, which is not in the build context %s", name, rel(root, df), s.Line, src, rel(root, ctxDir))
				continue
			}
			// Files the ignore file drops inside a copied directory are
			// meant to stay out (tests, testdata); a source must keep at
			// least one file.
			kept := 0
			for _, m := range matches {
				_ = filepath.WalkDir(m, func(p string, d os.DirEntry, err error) error {
					if err != nil || d.IsDir() {
						return err
					}
					if !ignore.excludes(filepath.ToSlash(rel(ctxDir, p))) {
						kept++
						return filepath.SkipAll
					}
					return nil
				})
			}
			if kept == 0 {
				t.Errorf("service %s: %s line %d copies %s, but %s excludes all of it from the build context", name, rel(root, df), s.Line, src, rel(root, ignoreFile))
			}
		}
	}
}

// TestAgentImageHasWhatGoBuildNeeds checks the agent image's build against
// the Go build of bitville-apm: every file of the module's packages it
// compiles is copied into the build stage and not dropped by the
// Dockerfile's ignore file, and the golang image is the go.mod version.
func TestAgentImageHasWhatGoBuildNeeds(t *testing.T) {
	p := loadProject(t)
	root := repoRoot(t)
	b := service(t, p, "agent").Build
	if b == nil {
		t.Fatal("service agent has no build")
	}
	if filepath.Clean(b.Context) != root {
		t.Fatalf("service agent builds from %s; the Go build needs the module root %s as context", b.Context, root)
	}
	df := dockerfilePath(b)
	steps, err := parseDockerfile(df)
	if err != nil {
		t.Fatal(err)
	}
	var copied []string
	goImage := ""
	for _, s := range steps {
		if s.Instruction == "FROM" && strings.HasPrefix(s.Args, "golang:") {
			goImage = strings.Fields(s.Args)[0]
		}
		if s.Instruction == "COPY" && s.From == "" {
			for _, src := range s.Sources {
				copied = append(copied, path.Clean(src))
			}
		}
	}
	ignore, ignoreFile := dockerignore(df, b.Context)

	gomod := string(readFile(t, filepath.Join(root, "go.mod")))
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(gomod)
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	if !strings.HasPrefix(goImage, "golang:"+m[1]+"-") && goImage != "golang:"+m[1] {
		t.Errorf("%s builds with %q; go.mod says go %s: use golang:%s-bookworm", rel(root, df), goImage, m[1], m[1])
	}

	cmd := exec.Command(goTool(t), "list", "-deps", "-json", "./cmd/bitville-apm")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderrOf(err))
	}
	need := []string{"go.mod", "go.sum"}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var pkg struct {
			Dir                                                   string
			Standard                                              bool
			GoFiles, CgoFiles, CFiles, HFiles, SFiles, EmbedFiles []string
		}
		if err := dec.Decode(&pkg); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		if pkg.Standard || !inside(root, pkg.Dir) {
			continue
		}
		for _, list := range [][]string{pkg.GoFiles, pkg.CgoFiles, pkg.CFiles, pkg.HFiles, pkg.SFiles, pkg.EmbedFiles} {
			for _, f := range list {
				need = append(need, filepath.ToSlash(rel(root, filepath.Join(pkg.Dir, f))))
			}
		}
	}
	if len(need) < 10 {
		t.Fatalf("go list found only %v: not the bitville-apm build", need)
	}
	for _, f := range need {
		if !slices.ContainsFunc(copied, func(src string) bool { return src == "." || f == src || strings.HasPrefix(f, src+"/") }) {
			t.Errorf("the Go build needs %s, which %s does not COPY (it copies %v)", f, rel(root, df), copied)
		}
		if ignore.excludes(f) {
			t.Errorf("the Go build needs %s, which %s excludes from the build context", f, rel(root, ignoreFile))
		}
	}
}

type dockerStep struct {
	Line        int
	Instruction string   // upper case
	Args        string   // the rest of the line, continuation lines joined
	From        string   // COPY/ADD --from=
	Sources     []string // COPY/ADD sources
}

func dockerfilePath(b *types.BuildConfig) string {
	df := b.Dockerfile
	if df == "" {
		df = "Dockerfile"
	}
	if !filepath.IsAbs(df) {
		df = filepath.Join(b.Context, df)
	}
	return df
}

// parseDockerfile reads the instructions of a Dockerfile (comments and
// line continuations handled; heredocs are not used here).
func parseDockerfile(p string) ([]dockerStep, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("Dockerfile: %v", err)
	}
	var steps []dockerStep
	var cur strings.Builder
	start := 0
	for i, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if cur.Len() > 0 && strings.HasPrefix(trimmed, "#") {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if s, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(trimmed)
		instr, args, _ := strings.Cut(cur.String(), " ")
		step := dockerStep{Line: start, Instruction: strings.ToUpper(instr), Args: strings.TrimSpace(args)}
		if step.Instruction == "COPY" || step.Instruction == "ADD" {
			fields := strings.Fields(step.Args)
			for len(fields) > 0 && strings.HasPrefix(fields[0], "--") {
				if v, ok := strings.CutPrefix(fields[0], "--from="); ok {
					step.From = v
				}
				fields = fields[1:]
			}
			if len(fields) > 0 && strings.HasPrefix(fields[0], "[") {
				var list []string
				if err := json.Unmarshal([]byte(strings.Join(fields, " ")), &list); err != nil {
					return nil, fmt.Errorf("%s line %d: %v", p, start, err)
				}
				fields = list
			}
			if len(fields) < 2 {
				return nil, fmt.Errorf("%s line %d: %s needs a source and a destination", p, start, step.Instruction)
			}
			step.Sources = fields[:len(fields)-1]
		}
		steps = append(steps, step)
		cur.Reset()
	}
	return steps, nil
}

// ignoreRules is a .dockerignore: patterns with * ? and **, ! to
// re-include; the last pattern matching a path or one of its parent
// directories decides.
type ignoreRules []struct {
	re     *regexp.Regexp
	negate bool
}

// dockerignore reads the ignore file BuildKit uses for Dockerfile df:
// <df>.dockerignore beside it, else .dockerignore at the context's root.
func dockerignore(df, ctxDir string) (ignoreRules, string) {
	for _, f := range []string{df + ".dockerignore", filepath.Join(ctxDir, ".dockerignore")} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var rules ignoreRules
		for _, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			neg := strings.HasPrefix(line, "!")
			pat := path.Clean(strings.TrimPrefix(strings.TrimPrefix(line, "!"), "/"))
			var re strings.Builder
			re.WriteString("^")
			for i := 0; i < len(pat); i++ {
				switch {
				case strings.HasPrefix(pat[i:], "**/"):
					re.WriteString("(.*/)?")
					i += 2
				case strings.HasPrefix(pat[i:], "**"):
					re.WriteString(".*")
					i++
				case pat[i] == '*':
					re.WriteString("[^/]*")
				case pat[i] == '?':
					re.WriteString("[^/]")
				default:
					re.WriteString(regexp.QuoteMeta(pat[i : i+1]))
				}
			}
			re.WriteString("$")
			rules = append(rules, struct {
				re     *regexp.Regexp
				negate bool
			}{regexp.MustCompile(re.String()), neg})
		}
		return rules, f
	}
	return nil, ""
}

func (r ignoreRules) excludes(p string) bool {
	excluded := false
	for _, rule := range r {
		for q := p; q != "." && q != "/" && q != ""; q = path.Dir(q) {
			if rule.re.MatchString(q) {
				excluded = !rule.negate
				break
			}
		}
	}
	return excluded
}
