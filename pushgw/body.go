package pushgw

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/bitville/bitville-apm/internal/push"
)

// reject builds the refusal of a push.
func reject(status int, reason, format string, args ...any) *Rejection {
	return &Rejection{Status: status, Reason: reason, Err: fmt.Errorf(format, args...)}
}

// bearer is the token of an Authorization: Bearer header, or "".
func bearer(r *http.Request) string {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

// checkContentType accepts a push whose media type is want (parameters
// aside; a missing Content-Type is taken as want, as curl --data-binary
// sends none worth reading).
func checkContentType(r *http.Request, want ...string) error {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil {
		for _, w := range want {
			if mt == w {
				return nil
			}
		}
	}
	return reject(http.StatusUnsupportedMediaType, ReasonContentType, "Content-Type %q: want %s", ct, strings.Join(want, " or "))
}

// readBody reads a push's body, decompressing gzip, refusing (413) a body
// over maxBody as sent or over maxDecoded once decompressed; it stops
// reading at the first byte past either, so a huge body costs no more
// than the limit.
func readBody(w http.ResponseWriter, r *http.Request, maxBody, maxDecoded int64) ([]byte, error) {
	if r.ContentLength > maxBody {
		return nil, reject(http.StatusRequestEntityTooLarge, ReasonBodyTooLarge, "the body has %d bytes; the limit is %d (pushgw.max-body-bytes)", r.ContentLength, maxBody)
	}
	var gz bool
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip":
		gz = true
	default:
		return nil, reject(http.StatusUnsupportedMediaType, ReasonContentEncoding, "Content-Encoding %q: want gzip or none", enc)
	}
	body := http.MaxBytesReader(w, r.Body, maxBody)
	var src io.Reader = body
	if gz {
		zr, err := gzip.NewReader(body)
		if err != nil {
			return nil, bodyError(err, maxBody, "cannot read the gzip body")
		}
		defer zr.Close()
		src = zr
	}
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(src, maxDecoded+1))
	if err != nil {
		return nil, bodyError(err, maxBody, "cannot read the body")
	}
	if n > maxDecoded {
		return nil, reject(http.StatusRequestEntityTooLarge, ReasonBodyTooLarge, "the body decompresses to more than %d bytes (pushgw.max-decoded-bytes)", maxDecoded)
	}
	return buf.Bytes(), nil
}

func bodyError(err error, maxBody int64, what string) error {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return reject(http.StatusRequestEntityTooLarge, ReasonBodyTooLarge, "the body has more than %d bytes (pushgw.max-body-bytes)", maxBody)
	}
	return reject(http.StatusBadRequest, ReasonMalformed, "%s: %w", what, err)
}

// origin is the job and instance headers of a push, checked.
func origin(r *http.Request) (job, instance string, err error) {
	job, instance = r.Header.Get(push.HeaderJob), r.Header.Get(push.HeaderInstance)
	if !push.ValidName(job) {
		return "", "", reject(http.StatusBadRequest, ReasonBadHeader, "%s %q: want 1 to 128 printable characters without '/'", push.HeaderJob, job)
	}
	if !push.ValidName(instance) {
		return "", "", reject(http.StatusBadRequest, ReasonBadHeader, "%s %q: want 1 to 128 printable characters without '/'", push.HeaderInstance, instance)
	}
	return job, instance, nil
}

// metricsMeta is the Meta of a metrics push from its headers.
func metricsMeta(r *http.Request, project string) (Meta, error) {
	job, instance, err := origin(r)
	if err != nil {
		return Meta{}, err
	}
	m := Meta{Project: project, Job: job, Instance: instance}
	if m.Batch, err = push.ParseBatchID(r.Header.Get(push.HeaderBatch)); err != nil {
		return Meta{}, reject(http.StatusBadRequest, ReasonBadHeader, "%s: %w", push.HeaderBatch, err)
	}
	ms, err := strconv.ParseInt(r.Header.Get(push.HeaderTime), 10, 64)
	if err != nil || ms <= 0 {
		return Meta{}, reject(http.StatusBadRequest, ReasonBadHeader, "%s %q: want the snapshot's time in unix milliseconds", push.HeaderTime, r.Header.Get(push.HeaderTime))
	}
	m.Time = time.UnixMilli(ms)
	if v := r.Header.Get(push.HeaderInterval); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > 24*time.Hour {
			return Meta{}, reject(http.StatusBadRequest, ReasonBadHeader, "%s %q: want a positive duration such as 15s, at most a day", push.HeaderInterval, v)
		}
		m.Interval = d
	}
	return m, nil
}
