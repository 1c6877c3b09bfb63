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
	got := InTheWay(r, Policy{Capacity: 1}, []*Reservation{before, across, other, inside})
	if len(got) != 2 || got[0] != across || got[1] != inside {
		t.Errorf("InTheWay = %v, want across and inside, in held's order", got)
	}
	if Fits(r, Policy{Capacity: 1}, []*Reservation{before, other}) != true || Fits(r, Policy{Capacity: 1}, []*Reservation{inside}) != false {
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
	if got := InTheWay(r, Policy{Capacity: 2}, []*Reservation{a, b, c}); got != nil {
		t.Errorf("capacity 2, never two at once: InTheWay = %v, want none", got)
	}
	if got := InTheWay(r, Policy{Capacity: 1}, []*Reservation{a, b, c}); len(got) != 3 {
		t.Errorf("capacity 1: InTheWay = %v, want all three", got)
	}
	// Back to back with r on both sides: nothing overlaps, even at capacity 1.
	if got := InTheWay(r, Policy{Capacity: 1}, []*Reservation{res("x", 8, 10), res("y", 14, 16)}); got != nil {
		t.Errorf("back to back: InTheWay = %v, want none", got)
	}
	// d overlaps b from 12: at 12 two are there, so capacity 2 is full from 12 on, and the
	// two named are those that fill it then (not a, which ended before).
	d := res("d", 12, 16)
	got := InTheWay(r, Policy{Capacity: 2}, []*Reservation{a, b, c, d})
	if len(got) != 2 || got[0] != b || got[1] != d {
		t.Errorf("capacity 2, full at 12: InTheWay = %v, want b and d", got)
	}
	if at, in, ok := FirstFull(r.Start, r.End, Policy{Capacity: 2}, []*Reservation{a, b, c, d}); !ok || !at.Equal(at12()) || len(in) != 2 {
		t.Errorf("FirstFull = %v %v, want 12:00", at, ok)
	}
	if !Fits(r, Policy{Capacity: 3}, []*Reservation{a, b, c, d}) {
		t.Error("capacity 3 with at most 2 at once must fit")
	}
	// A reservation of another resource never counts.
	other := &Reservation{ID: "o", ResourceID: "desk", Start: at(10), End: at(14)}
	if !Fits(r, Policy{Capacity: 2}, []*Reservation{b, other, other}) {
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

// TestInTheWayBuffers checks buffers at their exact edges: a reservation blocks
// [Start-BufferBefore, End+BufferAfter), so two conflict when one starts less than the
// after-buffer plus the before-buffer after the other ends.
func TestInTheWayBuffers(t *testing.T) {
	at := func(h, m int) time.Time { return time.Date(2030, 1, 1, h, m, 0, 0, time.UTC) }
	res := func(id string, from, to time.Time) *Reservation {
		return &Reservation{ID: id, ResourceID: "room", Start: from, End: to}
	}
	held := res("held", at(9, 0), at(10, 0)) // ends at 10:00
	after15 := Policy{BufferAfter: 15 * time.Minute}
	both := Policy{BufferBefore: 5 * time.Minute, BufferAfter: 15 * time.Minute}
	for _, tc := range []struct {
		name  string
		p     Policy
		r     *Reservation
		meets bool
	}{
		{"no buffer: back to back", Policy{}, res("r", at(10, 0), at(11, 0)), false},
		{"after 15m: a 10:10 start", after15, res("r", at(10, 10), at(11, 0)), true},
		{"after 15m: one µs before 10:15", after15, res("r", at(10, 15).Add(-time.Microsecond), at(11, 0)), true},
		{"after 15m: a 10:15 start", after15, res("r", at(10, 15), at(11, 0)), false},
		{"after 15m: ending 9:00, before held", after15, res("r", at(8, 0), at(9, 0)), true},
		{"after 15m: ending 8:45", after15, res("r", at(8, 0), at(8, 45)), false},
		{"5m+15m: a 10:15 start", both, res("r", at(10, 15), at(11, 0)), true},
		{"5m+15m: one µs before 10:20", both, res("r", at(10, 20).Add(-time.Microsecond), at(11, 0)), true},
		{"5m+15m: a 10:20 start", both, res("r", at(10, 20), at(11, 0)), false},
		{"5m+15m: ending 8:40", both, res("r", at(8, 0), at(8, 40)), false},
		{"5m+15m: ending one µs after 8:40", both, res("r", at(8, 0), at(8, 40).Add(time.Microsecond)), true},
		{"another resource", both, &Reservation{ID: "o", ResourceID: "desk", Start: at(10, 0), End: at(11, 0)}, false},
	} {
		if got := tc.p.Meet(tc.r, held); got != tc.meets || tc.p.Meet(held, tc.r) != tc.meets {
			t.Errorf("%s: Meet = %v, want %v (both ways)", tc.name, got, tc.meets)
		}
		if got := Fits(tc.r, tc.p, []*Reservation{held}); got == tc.meets {
			t.Errorf("%s: Fits = %v, want %v", tc.name, got, !tc.meets)
		}
	}
	if s, e := both.Blocks(held); !s.Equal(at(8, 55)) || !e.Equal(at(10, 15)) {
		t.Errorf("Blocks = %s to %s, want 8:55 to 10:15", s, e)
	}
}

// TestInTheWayBuffersCapacity checks that with capacity N the peak is taken over blocked
// windows: two booked windows that only touch, and a third touching both, fill a capacity 2
// resource once a buffer makes the blocked windows overlap.
func TestInTheWayBuffersCapacity(t *testing.T) {
	at := func(h int) time.Time { return time.Date(2030, 1, 1, h, 0, 0, 0, time.UTC) }
	res := func(id string, from, to int) *Reservation {
		return &Reservation{ID: id, ResourceID: "lot", Start: at(from), End: at(to)}
	}
	a, b := res("a", 8, 10), res("b", 10, 12)
	r := res("r", 9, 11) // overlaps a, then b
	if !Fits(r, Policy{Capacity: 2}, []*Reservation{a, b}) {
		t.Fatal("capacity 2 without buffers: a and b never overlap, r fits")
	}
	p := Policy{Capacity: 2, BufferAfter: time.Minute}
	got := InTheWay(r, p, []*Reservation{a, b})
	if len(got) != 2 || got[0] != a || got[1] != b {
		t.Errorf("capacity 2, 1m after: InTheWay = %v, want a and b (a blocks to 10:01, over b's start)", got)
	}
	// Three at once: only where a's after-buffer reaches over b's start.
	p3 := Policy{Capacity: 3, BufferAfter: time.Minute}
	at10, in, ok := FirstFull(at(7), at(13), p3, []*Reservation{a, b, r})
	if !ok || !at10.Equal(at(10)) || len(in) != 3 {
		t.Errorf("FirstFull = %s %v %v, want 10:00 with all three", at10, in, ok)
	}
	if _, _, ok := FirstFull(at(7), at(13), Policy{Capacity: 3}, []*Reservation{a, b, r}); ok {
		t.Error("without buffers the three are never there at once")
	}
	// A before-buffer counts alike, the instant given in real time: b blocks from 9:00, r
	// from 8:00, a until 10:00.
	pb := Policy{Capacity: 3, BufferBefore: time.Hour}
	if at9, _, ok := FirstFull(at(7), at(13), pb, []*Reservation{a, b, r}); !ok || !at9.Equal(at(9)) {
		t.Errorf("FirstFull with 1h before = %s %v, want 9:00", at9, ok)
	}
}

// TestRulesCheck checks each booking rule at exactly its bound, and what the refusal names.
func TestRulesCheck(t *testing.T) {
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	rules := Rules{MinDuration: 30 * time.Minute, MaxDuration: 2 * time.Hour, MinNotice: time.Hour, MaxAdvance: 24 * time.Hour}
	res := func(start time.Time, d time.Duration, s Status) *Reservation {
		return &Reservation{ResourceID: "room", Status: s, Start: start, End: start.Add(d)}
	}
	ok := now.Add(2 * time.Hour)
	for _, tc := range []struct {
		name string
		r    *Reservation
		rule string // "" for admitted
	}{
		{"min_duration exactly", res(ok, 30*time.Minute, StatusPending), ""},
		{"min_duration one µs less", res(ok, 30*time.Minute-time.Microsecond, StatusPending), RuleMinDuration},
		{"max_duration exactly", res(ok, 2*time.Hour, StatusPending), ""},
		{"max_duration one µs more", res(ok, 2*time.Hour+time.Microsecond, StatusPending), RuleMaxDuration},
		{"min_notice exactly", res(now.Add(time.Hour), time.Hour, StatusPending), ""},
		{"min_notice one µs short", res(now.Add(time.Hour-time.Microsecond), time.Hour, StatusConfirmed), RuleMinNotice},
		{"max_advance exactly", res(now.Add(24*time.Hour), time.Hour, StatusPending), ""},
		{"max_advance one µs past", res(now.Add(24*time.Hour+time.Microsecond), time.Hour, StatusPending), RuleMaxAdvance},
		{"BLOCKED: notice exempt", res(now.Add(time.Minute), time.Hour, StatusBlocked), ""},
		{"BLOCKED: advance exempt", res(now.Add(48*time.Hour), time.Hour, StatusBlocked), ""},
		{"BLOCKED: max_duration still", res(ok, 3*time.Hour, StatusBlocked), RuleMaxDuration},
		{"BLOCKED: min_duration still", res(ok, time.Minute, StatusBlocked), RuleMinDuration},
	} {
		err := rules.Check(3, tc.r, now)
		if tc.rule == "" {
			if err != nil {
				t.Errorf("%s: refused: %v", tc.name, err)
			}
			continue
		}
		var e *Error
		if !errors.As(err, &e) || e.Code != ESTATE || e.Reason != ReasonRuleViolation {
			t.Errorf("%s: Check = %v, want ESTATE RULE_VIOLATION", tc.name, err)
			continue
		}
		if e.Metadata["rule"] != tc.rule || e.Metadata["resource_id"] != "room" || e.Metadata["item"] != "3" || e.Metadata["limit"] == "" {
			t.Errorf("%s: metadata %v, want rule %s, resource room, item 3 and the limit", tc.name, e.Metadata, tc.rule)
		}
	}
	e := new(Error)
	errors.As(rules.Check(0, res(now, time.Hour, StatusPending), now), &e)
	if e.Metadata["limit"] != "1h0m0s" || e.Metadata["earliest_start"] != "2030-01-01T13:00:00Z" {
		t.Errorf("min_notice metadata = %v, want limit 1h0m0s and earliest_start 13:00", e.Metadata)
	}
	if err := (Rules{}).Check(0, res(now.Add(-time.Hour), time.Nanosecond, StatusPending), now); err != nil {
		t.Errorf("no rules: %v", err)
	}
}

// TestRulesValidate checks that PutResource's validation names each bad rule.
func TestRulesValidate(t *testing.T) {
	ok := Resource{ID: "room", Rules: Rules{BufferBefore: MaxRule, BufferAfter: time.Minute, MinDuration: time.Hour, MaxDuration: time.Hour, MinNotice: 0, MaxAdvance: MaxRule}}
	if err := ok.Validate("resource."); err != nil {
		t.Fatalf("valid rules refused: %v", err)
	}
	bad := Resource{ID: "room", Rules: Rules{BufferBefore: -time.Second, BufferAfter: MaxRule + time.Microsecond,
		MinDuration: 2 * time.Hour, MaxDuration: time.Hour, MinNotice: -1, MaxAdvance: 400 * 24 * time.Hour}}
	var e *Error
	if !errors.As(bad.Validate("resource."), &e) {
		t.Fatal("bad rules accepted")
	}
	want := map[string]bool{"resource.buffer_before": true, "resource.buffer_after": true, "resource.max_duration": true,
		"resource.min_notice": true, "resource.max_advance": true}
	for _, f := range e.Fields {
		delete(want, f.Field)
	}
	if len(want) > 0 {
		t.Errorf("fields not named: %v (got %v)", want, e.Fields)
	}
}
