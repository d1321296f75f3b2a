package pushgw

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"google.golang.org/protobuf/encoding/protowire"
)

// decodedSample is one time series of a decoded WriteRequest, with its one
// sample.
type decodedSample struct {
	Labels    []Label
	Value     float64
	Timestamp int64
}

// key is the series as name{a="b",...} with its labels in their order.
func (d decodedSample) key() string {
	var b strings.Builder
	for i, l := range d.Labels {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", l.Name, l.Value)
	}
	return "{" + b.String() + "}"
}

// decodeWriteRequest reads a snappy-compressed WriteRequest field by
// field, independently of the encoder: every series must hold exactly one
// sample and nothing but the known fields.
func decodeWriteRequest(body []byte) ([]decodedSample, error) {
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		return nil, fmt.Errorf("snappy: %w", err)
	}
	var out []decodedSample
	err = eachField(raw, func(num protowire.Number, typ protowire.Type, b []byte) error {
		if num != 1 || typ != protowire.BytesType {
			return fmt.Errorf("WriteRequest: unexpected field %d type %d", num, typ)
		}
		var d decodedSample
		samples := 0
		err := eachField(b, func(num protowire.Number, typ protowire.Type, b []byte) error {
			switch {
			case num == 1 && typ == protowire.BytesType:
				var l Label
				err := eachField(b, func(num protowire.Number, typ protowire.Type, b []byte) error {
					switch {
					case num == 1 && typ == protowire.BytesType:
						l.Name = string(b)
					case num == 2 && typ == protowire.BytesType:
						l.Value = string(b)
					default:
						return fmt.Errorf("Label: unexpected field %d type %d", num, typ)
					}
					return nil
				})
				d.Labels = append(d.Labels, l)
				return err
			case num == 2 && typ == protowire.BytesType:
				samples++
				return eachField(b, func(num protowire.Number, typ protowire.Type, b []byte) error {
					switch {
					case num == 1 && typ == protowire.Fixed64Type:
						v, n := protowire.ConsumeFixed64(b)
						if n < 0 {
							return protowire.ParseError(n)
						}
						d.Value = math.Float64frombits(v)
					case num == 2 && typ == protowire.VarintType:
						v, n := protowire.ConsumeVarint(b)
						if n < 0 {
							return protowire.ParseError(n)
						}
						d.Timestamp = int64(v)
					default:
						return fmt.Errorf("Sample: unexpected field %d type %d", num, typ)
					}
					return nil
				})
			}
			return fmt.Errorf("TimeSeries: unexpected field %d type %d", num, typ)
		})
		if err != nil {
			return err
		}
		if samples != 1 {
			return fmt.Errorf("TimeSeries %s: %d samples; want 1", d.key(), samples)
		}
		out = append(out, d)
		return nil
	})
	return out, err
}

// eachField calls fn with every field of the message b; for a bytes field
// it passes its content, for the others the value's bytes.
func eachField(b []byte, fn func(protowire.Number, protowire.Type, []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var val []byte
		if typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return protowire.ParseError(m)
			}
			val, n = v, m
		} else {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			val = b[:n]
		}
		if err := fn(num, typ, val); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

var rwMeta = Meta{Project: "shop", Job: "bitville-apm-agent", Instance: "web-1", Time: time.UnixMilli(1_700_000_000_123)}

func TestRemoteWriteEncode(t *testing.T) {
	text := `# TYPE req_total counter
req_total{code="200"} 7
req_total{code="500"} 0
# TYPE temp gauge
temp -1.5
# TYPE up gauge
up +Inf
# TYPE lat_seconds histogram
lat_seconds_bucket{le="0.1"} 3
lat_seconds_bucket{le="1"} 5
lat_seconds_bucket{le="+Inf"} 6
lat_seconds_sum 2.25
lat_seconds_count 6
`
	snap := newTestSnapshot(t, rwMeta, text)
	var want []decodedSample
	snap.EachSample(func(ls []Label, v float64) {
		want = append(want, decodedSample{Labels: slices.Clone(ls), Value: v, Timestamp: rwMeta.Time.UnixMilli()})
	})
	if len(want) != 9 {
		t.Fatalf("the test snapshot has %d samples; want 9", len(want))
	}
	for _, max := range []int{1, 2, 4, 9, 100} {
		t.Run(fmt.Sprintf("max=%d", max), func(t *testing.T) {
			reqs := encodeSnapshot(snap, max)
			if wantReqs := (len(want) + max - 1) / max; len(reqs) != wantReqs {
				t.Fatalf("got %d requests; want %d", len(reqs), wantReqs)
			}
			var got []decodedSample
			for i, r := range reqs {
				d, err := decodeWriteRequest(r.body)
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				if len(d) != r.samples || len(d) > max {
					t.Errorf("request %d: got %d series, samples=%d; want samples equal, at most %d", i, len(d), r.samples, max)
				}
				got = append(got, d...)
			}
			if len(got) != len(want) {
				t.Fatalf("got %d series; want %d", len(got), len(want))
			}
			for i := range want {
				g, w := got[i], want[i]
				if g.key() != w.key() || math.Float64bits(g.Value) != math.Float64bits(w.Value) || g.Timestamp != w.Timestamp {
					t.Errorf("series %d: got %s %v @%d; want %s %v @%d", i, g.key(), g.Value, g.Timestamp, w.key(), w.Value, w.Timestamp)
				}
			}
		})
	}
}

func TestRemoteWriteEncodeEmpty(t *testing.T) {
	if reqs := encodeSnapshot(newTestSnapshot(t, rwMeta, ""), 10); len(reqs) != 0 {
		t.Errorf("got %d requests for an empty snapshot; want 0", len(reqs))
	}
}

func BenchmarkRemoteWriteEncode(b *testing.B) {
	var text strings.Builder
	text.WriteString("# TYPE http_requests_total counter\n")
	for i := range 2000 {
		fmt.Fprintf(&text, "http_requests_total{code=\"200\",handler=\"/api/v%d\",method=\"GET\"} %d\n", i, i*7)
	}
	snap := newTestSnapshot(b, rwMeta, text.String())
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		encodeSnapshot(snap, 5000)
	}
}
