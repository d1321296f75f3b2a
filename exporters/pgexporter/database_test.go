package pgexporter

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// TestDBStatsDatabaseSizeIsCached: pg_database_size runs once per sizeEvery; in
// between the cached value is emitted.
func TestDBStatsDatabaseSizeIsCached(t *testing.T) {
	pg := startPG(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	now := time.Unix(1_800_000_000, 0)
	d := &dbsDatabase{sizeEvery: 5 * time.Minute, now: func() time.Time { return now }}
	sizeOf := func() float64 {
		t.Helper()
		if err := d.update(ctx, conn, 150000); err != nil {
			t.Fatal(err)
		}
		ch := make(chan prometheus.Metric, 1000)
		d.collect("s", ch)
		close(ch)
		for metric := range ch {
			if !strings.Contains(metric.Desc().String(), "bitville_pg_database_size_bytes") {
				continue
			}
			if g := dbsGaugeOf(t, metric); g.label == "postgres" {
				return g.value
			}
		}
		t.Fatal("no size for postgres")
		return 0
	}
	first := sizeOf()
	exec(t, pg, "postgres", "CREATE TABLE dbstats_big AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 20000) g")
	now = now.Add(time.Minute)
	if got := sizeOf(); got != first {
		t.Errorf("size within 5 minutes: got %v; want the cached %v", got, first)
	}
	now = now.Add(5 * time.Minute)
	if got := sizeOf(); got <= first {
		t.Errorf("size after 5 minutes: got %v; want more than %v (a 4 MB table was created)", got, first)
	}
}

type dbsGaugeSample struct {
	label string // datname
	value float64
}

func dbsGaugeOf(t *testing.T, m prometheus.Metric) dbsGaugeSample {
	t.Helper()
	pb := &dto.Metric{}
	if err := m.Write(pb); err != nil {
		t.Fatal(err)
	}
	var s dbsGaugeSample
	for _, l := range pb.GetLabel() {
		if l.GetName() == "datname" {
			s.label = l.GetValue()
		}
	}
	s.value = pb.GetGauge().GetValue()
	return s
}
