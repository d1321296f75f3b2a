package pgexporter

import (
	"strings"
	"testing"
)

func TestDBStatsCheckpointerQueryByVersion(t *testing.T) {
	for _, tc := range []struct {
		version  int
		want     []string
		wantNone []string
	}{
		{130012, []string{"FROM pg_stat_bgwriter", "checkpoints_req", "buffers_backend"}, []string{"pg_stat_checkpointer"}},
		{140010, []string{"FROM pg_stat_bgwriter", "checkpoints_timed", "buffers_checkpoint"}, []string{"pg_stat_checkpointer"}},
		{150007, []string{"FROM pg_stat_bgwriter", "checkpoint_write_time", "checkpoint_sync_time"}, []string{"pg_stat_checkpointer"}},
		{160003, []string{"FROM pg_stat_bgwriter", "maxwritten_clean", "buffers_alloc"}, []string{"pg_stat_checkpointer"}},
		{170000, []string{"pg_stat_checkpointer c", "c.num_timed", "c.num_requested", "c.write_time", "c.sync_time", "c.buffers_written", "b.buffers_clean", "b.buffers_alloc", "NULL::int8"},
			[]string{"checkpoints_req", "buffers_backend", "buffers_checkpoint"}},
		{180001, []string{"pg_stat_checkpointer"}, []string{"buffers_backend"}},
	} {
		q := dbsCheckpointerQuery(tc.version)
		for _, w := range tc.want {
			if !strings.Contains(q, w) {
				t.Errorf("version %d: the query lacks %q:\n%s", tc.version, w, q)
			}
		}
		for _, w := range tc.wantNone {
			if strings.Contains(q, w) {
				t.Errorf("version %d: the query has %q:\n%s", tc.version, w, q)
			}
		}
		// The same nine columns whatever the version.
		sel := q[len("SELECT "):strings.Index(q, "FROM")]
		if n := strings.Count(sel, ",") + 1; n != 9 {
			t.Errorf("version %d: %d columns; want 9", tc.version, n)
		}
	}
}
