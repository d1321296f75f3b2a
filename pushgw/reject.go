package pushgw

import "net/http"

// Rejection is why a push was refused: the HTTP status to answer and the
// reason, a label value of bitville_pushgw_rejected_total.
type Rejection struct {
	Status int
	Reason string
	Err    error
}

func (r *Rejection) Error() string { return r.Err.Error() }
func (r *Rejection) Unwrap() error { return r.Err }

// Reasons for refusing a push. The set is fixed so that it can be a label.
const (
	ReasonMalformed         = "malformed"
	ReasonLabelName         = "label_name"
	ReasonMetricName        = "metric_name"
	ReasonTooManyLabels     = "too_many_labels"
	ReasonLabelValueTooLong = "label_value_too_long"
	ReasonDuplicateSeries   = "duplicate_series"
	ReasonTypeConflict      = "type_conflict"
	ReasonSampleTimestamp   = "sample_timestamp"
	ReasonFutureTimestamp   = "future_timestamp"
	ReasonAncientTimestamp  = "ancient_timestamp"
	ReasonSeriesLimit       = "series_limit"
	ReasonBodyTooLarge      = "body_too_large"
	ReasonContentType       = "content_type"
	ReasonContentEncoding   = "content_encoding"
	ReasonBadHeader         = "bad_header"
	ReasonUnauthorized      = "unauthorized"
	ReasonRateLimited       = "rate_limited"
	ReasonOverloaded        = "overloaded"
	ReasonInvalidEvent      = "invalid_event"
	ReasonTooManyEvents     = "too_many_events"
	ReasonNoEventSink       = "no_event_sink"
	ReasonInternal          = "internal"
)

// Reasons lists every reason, for initialising counters.
var Reasons = []string{
	ReasonMalformed, ReasonLabelName, ReasonMetricName, ReasonTooManyLabels,
	ReasonLabelValueTooLong, ReasonDuplicateSeries, ReasonTypeConflict,
	ReasonSampleTimestamp, ReasonFutureTimestamp, ReasonAncientTimestamp,
	ReasonSeriesLimit, ReasonBodyTooLarge, ReasonContentType,
	ReasonContentEncoding, ReasonBadHeader, ReasonUnauthorized,
	ReasonRateLimited, ReasonOverloaded, ReasonInvalidEvent,
	ReasonTooManyEvents, ReasonNoEventSink, ReasonInternal,
}

// invalid returns a 400 Rejection.
func invalid(reason string, err error) *Rejection {
	return &Rejection{Status: http.StatusBadRequest, Reason: reason, Err: err}
}

// tooLarge returns a 413 Rejection.
func tooLarge(reason string, err error) *Rejection {
	return &Rejection{Status: http.StatusRequestEntityTooLarge, Reason: reason, Err: err}
}
