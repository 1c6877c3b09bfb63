package reservation

import (
	"errors"
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
	got := InTheWay(r, 1, []*Reservation{before, across, other, inside})
	if len(got) != 2 || got[0] != across || got[1] != inside {
		t.Errorf("InTheWay = %v, want across and inside, in held's order", got)
	}
	if Fits(r, 1, []*Reservation{before, other}) != true || Fits(r, 1, []*Reservation{inside}) != false {
		t.Error("Fits disagrees with InTheWay")
	}
}

// TestInTheWayCapacity checks the rule on a resource of capacity above 1: the peak number of
// reservations at an instant counts, not how many overlap the window somewhere.
func TestInTheWayCapacity(t *testing.T) {
	at := func(h int) time.Time { return time.Date(2030, 1, 1, h, 0, 0, 0, time.UTC) }
	res := func(id string, from, to int) *Reservation {
		return &Reservation{ID: id, ResourceID: "lot", Start: at(from), End: at(to)}
	}
	r := res("r", 10, 14)
	// Three that together cover r's window, never two at once: capacity 2 admits r.
	a, b, c := res("a", 9, 11), res("b", 11, 13), res("c", 13, 15)
	if got := InTheWay(r, 2, []*Reservation{a, b, c}); got != nil {
		t.Errorf("capacity 2, never two at once: InTheWay = %v, want none", got)
	}
	if got := InTheWay(r, 1, []*Reservation{a, b, c}); len(got) != 3 {
		t.Errorf("capacity 1: InTheWay = %v, want all three", got)
	}
	// Back to back with r on both sides: nothing overlaps, even at capacity 1.
	if got := InTheWay(r, 1, []*Reservation{res("x", 8, 10), res("y", 14, 16)}); got != nil {
		t.Errorf("back to back: InTheWay = %v, want none", got)
	}
	// d overlaps b from 12: at 12 two are there, so capacity 2 is full from 12 on, and the
	// two named are those that fill it then (not a, which ended before).
	d := res("d", 12, 16)
	got := InTheWay(r, 2, []*Reservation{a, b, c, d})
	if len(got) != 2 || got[0] != b || got[1] != d {
		t.Errorf("capacity 2, full at 12: InTheWay = %v, want b and d", got)
	}
	if at, ok := FirstFull(r.Start, r.End, 2, []*Reservation{a, b, c, d}); !ok || !at.Equal(at12()) {
		t.Errorf("FirstFull = %v %v, want 12:00", at, ok)
	}
	if !Fits(r, 3, []*Reservation{a, b, c, d}) {
		t.Error("capacity 3 with at most 2 at once must fit")
	}
	// A reservation of another resource never counts.
	other := &Reservation{ID: "o", ResourceID: "desk", Start: at(10), End: at(14)}
	if !Fits(r, 2, []*Reservation{b, other, other}) {
		t.Error("another resource's reservations counted")
	}
}

func at12() time.Time { return time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC) }

func TestResourceValidate(t *testing.T) {
	ok := Resource{ID: "room-1", Capacity: 0, TimeZone: "Europe/Paris"}
	if err := ok.Validate("resource."); err != nil {
		t.Fatalf("valid resource refused: %v", err)
	}
	bad := Resource{ID: "", Capacity: -1, TimeZone: "Mars/Olympus"}
	err := bad.Validate("resource.")
	var e *Error
	if !errorsAs(err, &e) || e.Code != EINVALID {
		t.Fatalf("Validate = %v, want EINVALID", err)
	}
	want := map[string]bool{"resource.id": true, "resource.capacity": true, "resource.time_zone": true}
	for _, f := range e.Fields {
		delete(want, f.Field)
	}
	if len(want) > 0 {
		t.Errorf("fields not named: %v (got %v)", want, e.Fields)
	}
	n := Resource{ID: "x"}
	n.Normalize()
	if n.Capacity != 1 || n.TimeZone != "UTC" {
		t.Errorf("Normalize = %+v, want capacity 1 in UTC", n)
	}
}

func errorsAs(err error, e **Error) bool { return errors.As(err, e) }
