package cache_test

import (
	"fmt"
	"testing"

	"reservation"
	"reservation/cache"
)

// BenchmarkOverlapping looks up a window on one of 100 resources of 1,000 reservations each:
// the cost of a refusal (or of letting a call through) on a replica's cache.
func BenchmarkOverlapping(b *testing.B) {
	c := following(b, cache.Options{})
	for i := range 100_000 {
		c.Apply(change(reservation.OpCreate, res(fmt.Sprint("r", i), fmt.Sprint("room", i%100), float64(i/100)*2, float64(i/100)*2+1, 1)))
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		i++
		c.Overlapping(res("new", fmt.Sprint("room", i%100), float64(i%1000)*2+0.5, float64(i%1000)*2+1.5, 1))
	}
}
