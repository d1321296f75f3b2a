package pgexporter

import (
	"net/url"
	"strings"

	"github.com/bitville/bitville-apm/internal/sqlfp"
)

// What the exporter reads from a session's query text: its fingerprint,
// whether PostgreSQL cut it, and the tags the PHP agent's sqlcommenter
// comment carries (endpoint, correlation_id).

// queryCut says a pg_stat_activity text was cut by PostgreSQL, which
// keeps at most track_activity_query_size-1 bytes, cut on a character
// boundary (up to 3 bytes less for UTF-8).
func queryCut(q string, querySize int) bool {
	return querySize > 0 && len(q) >= querySize-4
}

// fingerprintText fingerprints a pg_stat_activity text:
// FingerprintTruncated when it was cut, so all cut copies of one
// statement share a fingerprint.
func fingerprintText(q string, querySize int) sqlfp.Result {
	if queryCut(q, querySize) {
		return sqlfp.FingerprintTruncated(q)
	}
	return sqlfp.Fingerprint(q)
}

// parseEndpoint reads the endpoint of a sqlcommenter comment
// (/*endpoint='GET%20%2Forders%2F%7Bid%7D',...*/ → "GET /orders/{id}");
// "" when there is none or it is not valid URL encoding.
func parseEndpoint(q string) string { return sqlcommenterTag(q, "endpoint") }

// sqlcommenterTag reads the tag key of a sqlcommenter comment, URL-
// unescaped (the PHP agent writes endpoint and correlation_id); "" when
// there is none or it is not valid URL encoding.
func sqlcommenterTag(q, key string) string {
	for {
		i := strings.Index(q, "/*")
		if i < 0 {
			return ""
		}
		q = q[i+2:]
		j := strings.Index(q, "*/")
		if j < 0 {
			return ""
		}
		comment := q[:j]
		q = q[j+2:]
		for _, kv := range strings.Split(comment, ",") {
			k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
			if !ok || strings.TrimSpace(k) != key {
				continue
			}
			v = strings.TrimSpace(v)
			if len(v) < 2 || v[0] != '\'' || v[len(v)-1] != '\'' {
				continue
			}
			s, err := url.PathUnescape(v[1 : len(v)-1])
			if err != nil || s == "" {
				continue
			}
			return s
		}
	}
}
