package host

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestParseStat(t *testing.T) {
	self, err := os.ReadFile("testdata/scan1/101/stat")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		in      string
		want    procStat
		comm    string
		wantErr string
	}{
		{name: "php-fpm worker", in: string(self), comm: "php-fpm8.2",
			want: procStat{PID: 101, State: 'R', PPID: 100, Flags: 0x400100, UTime: 500, STime: 100, NumThreads: 1, StartTime: 3100}},
		{name: "comm with spaces and parentheses", in: "400 (bad) name (x)) S 1 400 400 0 -1 4194560 101 0 0 0 12 8 3 4 20 0 1 0 4100 3133440 379\n", comm: "bad) name (x)",
			want: procStat{PID: 400, State: 'S', PPID: 1, Flags: 4194560, UTime: 12, STime: 8, CUTime: 3, CSTime: 4, NumThreads: 1, StartTime: 4100}},
		{name: "kernel thread", in: "40 (kworker/1:2-events) I 2 0 0 0 -1 69238880 0 0 0 0 10 20 0 0 20 0 1 0 50 0 0", comm: "kworker/1:2-events",
			want: procStat{PID: 40, State: 'I', PPID: 2, Flags: 69238880, UTime: 10, STime: 20, NumThreads: 1, StartTime: 50}},
		{name: "empty comm", in: "7 () S 1 0 0 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 9 0 0", comm: "",
			want: procStat{PID: 7, State: 'S', PPID: 1, UTime: 1, STime: 2, NumThreads: 1, StartTime: 9}},
		{name: "empty", in: "", wantErr: "no (comm)"},
		{name: "no closing parenthesis", in: "999 (truncated\n", wantErr: "no (comm)"},
		{name: "bad pid", in: "x1 (a) S 1 0 0 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 9", wantErr: "bad pid"},
		{name: "too few fields", in: "7 (a) S 1 0 0 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0", wantErr: "21 fields"},
		{name: "bad state", in: "7 (a) SS 1 0 0 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 9", wantErr: "bad state"},
		{name: "negative utime", in: "7 (a) S 1 0 0 0 -1 0 0 0 0 0 -1 2 0 0 20 0 1 0 9", wantErr: "field 14"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStat([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got error %v; want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got.Comm) != tc.comm {
				t.Errorf("got comm %q; want %q", got.Comm, tc.comm)
			}
			got.Comm, tc.want.Comm = nil, nil
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v; want %+v", got, tc.want)
			}
		})
	}
}

func TestParseStatAllocatesNothing(t *testing.T) {
	b, err := os.ReadFile("testdata/scan2/400/stat")
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = parseStat(b) }); n != 0 {
		t.Errorf("got %v allocations; want 0", n)
	}
}

func TestProcessNameAndGroup(t *testing.T) {
	for _, tc := range []struct {
		comm        string
		kernel      bool
		name, group string
	}{
		{"php-fpm8.2", false, "php-fpm8.2", GroupPHP},
		{"php8.2", false, "php8.2", GroupPHP},
		{"php", false, "php", GroupPHP},
		{"postgres", false, "postgres", GroupPostgres},
		{"postmaster", false, "postmaster", GroupPostgres},
		{"postgres_fdw", false, "postgres_fdw", GroupOther},
		{"kworker/1:2", true, "kworker", GroupKernel},
		{"kworker/u8:2-events_unbound", true, "kworker", GroupKernel},
		{"ksoftirqd/0", true, "ksoftirqd", GroupKernel},
		{"rcu_preempt", true, "rcu_preempt", GroupKernel},
		{"/weird", true, "/weird", GroupKernel},
		{"a/b", false, "a/b", GroupOther},
		{"bvbackup", false, "bvbackup", GroupOther},
		// The kernel cuts comm at 15 bytes, here inside "é".
		{"caf\xc3", false, "caf\uFFFD", GroupOther},
	} {
		name := processName([]byte(tc.comm), tc.kernel)
		if group := processGroup(name, tc.kernel); name != tc.name || group != tc.group {
			t.Errorf("comm %q kernel %v: got %q %q; want %q %q", tc.comm, tc.kernel, name, group, tc.name, tc.group)
		}
	}
}

func TestReadGone(t *testing.T) {
	var r reader
	if _, err := r.read("testdata/scan1/12345/stat"); err != errGone {
		t.Errorf("got %v; want errGone", err)
	}
	b, err := r.read("testdata/scan1/1/stat")
	if err != nil || !strings.HasPrefix(string(b), "1 (systemd) S 0 ") {
		t.Errorf("got %q, %v", b, err)
	}
}

// FuzzParseStat checks that no stat line crashes the parser and that what
// it accepts has a comm inside the line's parentheses.
func FuzzParseStat(f *testing.F) {
	for _, p := range []string{"testdata/scan1/101/stat", "testdata/scan2/400/stat", "testdata/scan2/999/stat"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseStat(b)
		if err != nil {
			return
		}
		if s.PID <= 0 || len(s.Comm) > len(b) {
			t.Errorf("accepted %q as %+v", b, s)
		}
		_ = processName(s.Comm, s.Kernel())
	})
}
