package reservation

import (
	"testing"
	"time"
)

func TestInTheWay(t *testing.T) {
	at := func(h int) time.Time { return time.Date(2030, 1, 1, h, 0, 0, 0, time.UTC) }
	r := &Reservation{ID: "r", ResourceID: "room", Start: at(10), End: at(12)}
	before := &Reservation{ID: "before", ResourceID: "room", Start: at(8), End: at(10)} // touches: fits
	across := &Reservation{ID: "across", ResourceID: "room", Start: at(11), End: at(13)}
	inside := &Reservation{ID: "inside", ResourceID: "room", Start: at(10), End: at(11)}
	other := &Reservation{ID: "other", ResourceID: "desk", Start: at(10), End: at(12)}
	got := InTheWay(r, []*Reservation{before, across, other, inside})
	if len(got) != 2 || got[0] != across || got[1] != inside {
		t.Errorf("InTheWay = %v, want across and inside, in held's order", got)
	}
	if Fits(r, []*Reservation{before, other}) != true || Fits(r, []*Reservation{inside}) != false {
		t.Error("Fits disagrees with InTheWay")
	}
}
