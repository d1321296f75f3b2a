package pushgw

import (
	"math"
	"sync"

	"github.com/golang/snappy"
	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of Prometheus' remote-write 1.0 messages
// (prometheus/prompb types.proto and remote.proto): a WriteRequest is
// repeated TimeSeries (1); a TimeSeries is repeated Label (1) and repeated
// Sample (2); a Label is name (1) and value (2); a Sample is value (1,
// double) and timestamp (2, int64 milliseconds).
const (
	fieldWriteRequestTimeseries protowire.Number = 1
	fieldTimeSeriesLabels       protowire.Number = 1
	fieldTimeSeriesSamples      protowire.Number = 2
	fieldLabelName              protowire.Number = 1
	fieldLabelValue             protowire.Number = 2
	fieldSampleValue            protowire.Number = 1
	fieldSampleTimestamp        protowire.Number = 2
)

// writeRequest is one encoded remote-write request, snappy-compressed, as
// it waits in the queue.
type writeRequest struct {
	body    []byte
	samples int // also its series: a snapshot has one sample a series
}

// encodeBuffers are the scratch buffers of one encoding; pooled so that
// pushes encoded at the same time do not wait for each other.
type encodeBuffers struct {
	raw, comp []byte
}

var encodePool = sync.Pool{New: func() any { return new(encodeBuffers) }}

// encodeSnapshot encodes every sample of s into write requests of at most
// maxSeries series each, all stamped with s.Meta.Time.
func encodeSnapshot(s *Snapshot, maxSeries int) []writeRequest {
	buf := encodePool.Get().(*encodeBuffers)
	defer encodePool.Put(buf)
	ts := s.Meta.Time.UnixMilli()
	var out []writeRequest
	n := 0
	buf.raw = buf.raw[:0]
	flush := func() {
		if n == 0 {
			return
		}
		buf.comp = snappy.Encode(buf.comp[:cap(buf.comp)], buf.raw)
		// An exact copy: the queue holds many requests, and the scratch
		// buffer is as large as the uncompressed body.
		out = append(out, writeRequest{body: append([]byte(nil), buf.comp...), samples: n})
		buf.raw, n = buf.raw[:0], 0
	}
	s.EachSample(func(labels []Label, value float64) {
		buf.raw = appendTimeSeries(buf.raw, labels, value, ts)
		n++
		if n >= maxSeries {
			flush()
		}
	})
	flush()
	return out
}

// appendTimeSeries appends one WriteRequest.timeseries entry holding
// labels and one sample.
func appendTimeSeries(b []byte, labels []Label, value float64, ts int64) []byte {
	size := 0
	for _, l := range labels {
		size += protowire.SizeTag(fieldTimeSeriesLabels) + protowire.SizeBytes(labelSize(l))
	}
	ss := sampleSize(ts)
	size += protowire.SizeTag(fieldTimeSeriesSamples) + protowire.SizeBytes(ss)

	b = protowire.AppendTag(b, fieldWriteRequestTimeseries, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(size))
	for _, l := range labels {
		b = protowire.AppendTag(b, fieldTimeSeriesLabels, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(labelSize(l)))
		b = protowire.AppendTag(b, fieldLabelName, protowire.BytesType)
		b = protowire.AppendString(b, l.Name)
		b = protowire.AppendTag(b, fieldLabelValue, protowire.BytesType)
		b = protowire.AppendString(b, l.Value)
	}
	b = protowire.AppendTag(b, fieldTimeSeriesSamples, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(ss))
	// Both fields are written even when zero: proto3 readers take an
	// explicit default as well as an absent field.
	b = protowire.AppendTag(b, fieldSampleValue, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, math.Float64bits(value))
	b = protowire.AppendTag(b, fieldSampleTimestamp, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(ts))
	return b
}

func labelSize(l Label) int {
	return protowire.SizeTag(fieldLabelName) + protowire.SizeBytes(len(l.Name)) +
		protowire.SizeTag(fieldLabelValue) + protowire.SizeBytes(len(l.Value))
}

func sampleSize(ts int64) int {
	return protowire.SizeTag(fieldSampleValue) + protowire.SizeFixed64() +
		protowire.SizeTag(fieldSampleTimestamp) + protowire.SizeVarint(uint64(ts))
}
