package reservation_test

import (
	"testing"
	"time"

	"reservation"
)

// BenchmarkValidate is the domain check every new reservation goes through.
func BenchmarkValidate(b *testing.B) {
	t0 := time.Date(2030, 1, 1, 9, 0, 0, 0, time.UTC)
	r := &reservation.Reservation{UserID: "alice", ResourceID: "room-101", Start: t0, End: t0.Add(2 * time.Hour), Note: "late check-in"}
	for b.Loop() {
		r.Normalize()
		if err := r.Validate(); err != nil {
			b.Fatal(err)
		}
	}
}
