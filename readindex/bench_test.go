package readindex

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/google/uuid"

	"reservation"
)

// BenchmarkMemoryPerReservation measures the heap the index takes per reservation held (its
// copy and its places in the id map and the resource's and user's lists), through
// runtime.MemStats: 100,000 reservations of 1-3 hours over 10,000 resources and 20,000 users,
// with short notes, as rsvbench's read workload stores them. Reported as bytes/reservation.
func BenchmarkMemoryPerReservation(b *testing.B) {
	const n = 100_000
	base := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		x := New(nil, nil, Options{})
		x.mu.Lock()
		for i := range n {
			start := base.Add(time.Duration(i%8760) * time.Hour)
			x.insert(&reservation.Reservation{ID: uuid.Must(uuid.NewV7()).String(), UserID: fmt.Sprintf("user-%d", i%20000),
				ResourceID: fmt.Sprintf("room-%d", i%10000), Status: reservation.StatusConfirmed, Start: start, End: start.Add(time.Duration(1+i%3) * time.Hour),
				Note: "bench", CreatedAt: base, UpdatedAt: base, Version: 1})
		}
		x.mu.Unlock()
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/reservation")
		runtime.KeepAlive(x)
	}
}
