package jetstream_test

import (
	"context"
	"testing"
	"time"

	"reservation/repo/repotest"
)

// BenchmarkExportBacklog measures the export's rate while it drains a backlog of 131,072
// stored changes (2^17) into a new R3 stream (the stream is made fresh for each iteration):
//
//	go test -run '^$' -bench ExportBacklog -benchtime 1x ./jetstream
//
// The backlog is one real change copied by doubling, each copy with the next seqs: the
// export reads, encodes and publishes them as it would any.
func BenchmarkExportBacklog(b *testing.B) {
	urls := natsURLs(b)
	db, _ := repotest.NewDB(b)
	ctx := context.Background()
	w := startWriters(b, db)
	w.write(b, 0, 1) // a booking and a move
	for {
		var n int64
		var unstamped int64
		if err := db.GetContext(ctx, &unstamped, "SELECT COUNT(*) FROM reservation_changes WHERE seq IS NULL"); err != nil {
			b.Fatal(err)
		}
		if err := db.GetContext(ctx, &n, "SELECT COALESCE(MAX(seq), 0) FROM reservation_changes"); err != nil {
			b.Fatal(err)
		}
		if n >= 1<<17 {
			break
		}
		if n < 2 || unstamped > 0 {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if _, err := db.ExecContext(ctx, `INSERT INTO reservation_changes (seq, op, reservation_id, resource_id, resource_version, snapshot, created_at, committed_at, actor, reason, moved_from)
			SELECT seq + ?, op, reservation_id, resource_id, resource_version, snapshot, created_at, committed_at, actor, reason, moved_from FROM reservation_changes WHERE seq IS NOT NULL`, n); err != nil {
			b.Fatal(err)
		}
	}
	var total int64
	if err := db.GetContext(ctx, &total, "SELECT COUNT(*) FROM reservation_changes"); err != nil {
		b.Fatal(err)
	}
	b.Logf("backlog: %d changes", total)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		stream, prefix, js := testStream(b, urls)
		b.StartTimer()
		start := time.Now()
		_, stop := exporter(b, db, urls, stream, prefix, nil)
		waitExported(b, db, js, stream)
		elapsed := time.Since(start)
		stop()
		b.ReportMetric(float64(total)/elapsed.Seconds(), "changes/s")
	}
}
