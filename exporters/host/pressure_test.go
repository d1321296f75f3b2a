package host

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParsePressure(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		want    []pressure
		wantErr string
	}{
		{name: "cpu", in: "some avg10=15.78 avg60=7.78 avg300=2.74 total=13798959\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
			want: []pressure{{"cpu", "some", 13.798959}, {"cpu", "full", 0}}},
		{name: "some only (cpu before Linux 5.13)", in: "some avg10=0.00 avg60=0.00 avg300=0.00 total=42\n",
			want: []pressure{{"cpu", "some", 0.000042}}},
		{name: "empty", in: "", wantErr: "no some or full"},
		{name: "unknown scope", in: "most avg10=0.00 total=1\n", wantErr: "want some or full"},
		{name: "no total", in: "some avg10=0.00 avg60=0.00 avg300=0.00\n", wantErr: "no total"},
		{name: "bad total, nothing kept", in: "some total=1\nfull total=-1\n", wantErr: "not a number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parsePressure("cpu", []byte(tc.in), nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got error %v; want one containing %q", err, tc.wantErr)
				}
				if len(got) != 0 {
					t.Errorf("got %v with the error; want nothing", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v; want %v", got, tc.want)
			}
		})
	}
}

func TestReadPressure(t *testing.T) {
	var r reader
	t.Run("no PSI", func(t *testing.T) {
		got, err := readPressure(&r, t.TempDir(), nil)
		if err != nil || len(got) != 0 {
			t.Errorf("got %v, %v; want nothing and no error", got, err)
		}
	})
	t.Run("fixture", func(t *testing.T) {
		got, err := readPressure(&r, "testdata/scan2", nil)
		if err != nil {
			t.Fatal(err)
		}
		want := []pressure{{"cpu", "some", 4}, {"cpu", "full", 0}, {"io", "some", 3.688735}, {"io", "full", 3.254923},
			{"memory", "some", 0}, {"memory", "full", 0}}
		if !slices.Equal(got, want) {
			t.Errorf("got %v; want %v", got, want)
		}
	})
	t.Run("one bad file", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, "pressure"), 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "pressure", "cpu"), []byte("garbage\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "pressure", "io"), []byte("some avg10=0.00 total=2000000\n"), 0o644)
		got, err := readPressure(&r, dir, nil)
		if err == nil || !strings.Contains(err.Error(), "pressure/cpu") {
			t.Errorf("got error %v; want one naming pressure/cpu", err)
		}
		if want := []pressure{{"io", "some", 2}}; !slices.Equal(got, want) {
			t.Errorf("got %v; want %v", got, want)
		}
	})
}
