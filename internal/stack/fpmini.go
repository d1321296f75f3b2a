package stack

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// A php.ini line loading an extension: extension=name.so, extension="name"
// or zend_extension=/path/name.so.
var extensionLine = regexp.MustCompile(`(?m)^\s*(?:zend_)?extension\s*=\s*"?([^"\s;]+)`)

// scanDirWithout makes dst a copy of the ini scan directory php-fpm reads
// (binary's "Scan this dir for additional .ini files") without the files
// that load one of exts, for PHP_INI_SCAN_DIR. Naming an extension that no
// file loads is an error: the caller would measure something else than it
// thinks.
func scanDirWithout(binary, dst string, exts []string) error {
	out, err := exec.Command(binary, "-i").Output()
	if err != nil {
		return fmt.Errorf("%s -i: %w", binary, err)
	}
	src := ""
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(l, "Scan this dir for additional .ini files => "); ok {
			src = strings.TrimSpace(v)
		}
	}
	if src == "" || src == "(none)" {
		return fmt.Errorf("%s reads no ini scan directory: cannot leave out %s", binary, strings.Join(exts, ", "))
	}
	return copyIniWithout(src, dst, exts)
}

// copyIniWithout copies the .ini files of src into dst, leaving out those
// that load one of exts (by the extension's name: "tideways_xhprof" for
// extension=tideways_xhprof.so).
func copyIniWithout(src, dst string, exts []string) error {
	files, err := filepath.Glob(filepath.Join(src, "*.ini"))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	left := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		skip := false
		for _, m := range extensionLine.FindAllStringSubmatch(string(b), -1) {
			if name := strings.TrimSuffix(filepath.Base(m[1]), ".so"); slices.Contains(exts, name) {
				left[name] = true
				skip = true
			}
		}
		if skip {
			continue
		}
		if err := os.WriteFile(filepath.Join(dst, filepath.Base(f)), b, 0o644); err != nil {
			return err
		}
	}
	for _, e := range exts {
		if !left[e] {
			return fmt.Errorf("no ini file in %s loads extension %q", src, e)
		}
	}
	return nil
}
