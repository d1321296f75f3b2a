package push

import (
	"strings"
	"testing"
)

func TestParseBatchID(t *testing.T) {
	const boot = "0123456789abcdef"
	tests := []struct {
		name string
		in   string
		want BatchID
		ok   bool
	}{
		{"first", boot + "-1", BatchID{boot, 1}, true},
		{"large", boot + "-123456789", BatchID{boot, 123456789}, true},
		{"largest", boot + "-9223372036854775808", BatchID{boot, 1 << 63}, true},
		{"past the largest", boot + "-9223372036854775809", BatchID{}, false},
		{"past uint64", boot + "-18446744073709551616", BatchID{}, false},
		{"zero", boot + "-0", BatchID{}, false},
		{"leading zero", boot + "-01", BatchID{}, false},
		{"plus sign", boot + "-+1", BatchID{}, false},
		{"minus sign", boot + "--1", BatchID{}, false},
		{"no seq", boot + "-", BatchID{}, false},
		{"no dash", boot, BatchID{}, false},
		{"upper hex", "0123456789ABCDEF-1", BatchID{}, false},
		{"short boot", "0123456789abcde-1", BatchID{}, false},
		{"long boot", "0123456789abcdef0-1", BatchID{}, false},
		{"not hex", "0123456789abcdeg-1", BatchID{}, false},
		{"space", boot + "-1 ", BatchID{}, false},
		{"empty", "", BatchID{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseBatchID(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("ParseBatchID(%q) error = %v; want ok %v", tt.in, err, tt.ok)
			}
			if got != tt.want {
				t.Errorf("ParseBatchID(%q) = %+v; want %+v", tt.in, got, tt.want)
			}
			if tt.ok && got.String() != tt.in {
				t.Errorf("String() = %q; want %q", got.String(), tt.in)
			}
		})
	}
}

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{"job", "bitville-apm-agent", true},
		{"hostname", "web-1.example.com", true},
		{"host and port", "10.0.0.1:9100", true},
		{"utf-8", "büro-rechner", true},
		{"inner space", "web 1", true},
		{"longest", strings.Repeat("a", 128), true},
		{"too long", strings.Repeat("a", 129), false},
		{"empty", "", false},
		{"slash", "web/1", false},
		{"newline", "web\n1", false},
		{"tab", "web\t1", false},
		{"nul", "web\x001", false},
		{"delete", "web\x7f", false},
		{"invalid utf-8", "web\xff", false},
		{"leading space", " web", false},
		{"trailing space", "web ", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidName(tt.in); got != tt.want {
				t.Errorf("ValidName(%q) = %v; want %v", tt.in, got, tt.want)
			}
		})
	}
}
