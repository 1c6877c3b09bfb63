// Package feedtest checks what listeners of the change feed heard against the calls that were
// made and what they were answered, change by change: the reservation, the op and the version.
//
// A test records every write call with Calls (acknowledged, refused, or of unknown outcome),
// subscribes its listeners from a known cursor (after_seq) taken before the calls began, and
// gives Check what each listener heard after that cursor. The comparison then fails when an
// acknowledged change is missing or heard twice, when a change is heard that no call made or
// might have made (a refused call that wrote), when seqs have a gap, or when two listeners
// heard different feeds. Counting alone could not tell a dropped change from an extra one,
// and a listener subscribed without a cursor may or may not hear a change made just before.
package feedtest

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	pb "reservation/proto/reservation/v1"
)

// Op names, short for the messages.
const (
	Create = pb.ReservationUpdateType_RESERVATION_UPDATE_TYPE_CREATE
	Update = pb.ReservationUpdateType_RESERVATION_UPDATE_TYPE_UPDATE
	Delete = pb.ReservationUpdateType_RESERVATION_UPDATE_TYPE_DELETE
)

// Change identifies one change: the reservation, the op, and the reservation's version after it.
type Change struct {
	ID      string
	Op      pb.ReservationUpdateType
	Version int64
}

func (c Change) String() string {
	return fmt.Sprintf("%s %s v%d", strings.TrimPrefix(c.Op.String(), "RESERVATION_UPDATE_TYPE_"), c.ID, c.Version)
}

// Heard is the change a feed message carries.
func Heard(m *pb.ListenResponse) Change {
	return Change{ID: m.GetReservation().GetId(), Op: m.GetOp(), Version: m.GetReservation().GetVersion()}
}

// maybe is a call without a definite answer: it may have made one change of op, on the
// reservation id (any, when empty) whose note is note (any, when empty).
type maybe struct {
	op       pb.ReservationUpdateType
	id, note string
}

// Calls records the write calls of a test and their answers. Safe for concurrent use.
type Calls struct {
	mu      sync.Mutex
	acked   []Change
	maybes  []maybe
	refused int
	exclude []string // resource id prefixes whose changes are checked elsewhere
}

// Acked records a call answered OK with r, the reservation as it is after the call: it made
// the change (r's id, op, r's version). A call acknowledged twice with the same version (a
// retry of a call that had already written, a Confirm of a confirmed reservation) made one.
func (c *Calls) Acked(op pb.ReservationUpdateType, r *pb.Reservation) {
	ch := Change{ID: r.GetId(), Op: op, Version: r.GetVersion()}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !slices.Contains(c.acked, ch) {
		c.acked = append(c.acked, ch)
	}
}

// Unknown records a call whose outcome the client never learnt (a timeout, a lost
// connection): it may have made one change of op, on reservation id, or, for a Reserve whose
// id the client never got, on the reservation whose note is note.
func (c *Calls) Unknown(op pb.ReservationUpdateType, id, note string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.maybes = append(c.maybes, maybe{op: op, id: id, note: note})
}

// Refused records a call refused for good (FAILED_PRECONDITION, NOT_FOUND, ...): it must have
// written nothing, so no change may be heard that only it could explain.
func (c *Calls) Refused() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refused++
}

// Exclude leaves out of the comparison the changes of resources whose id begins with prefix:
// calls on them are recorded and checked elsewhere.
func (c *Calls) Exclude(prefix string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.exclude = append(c.exclude, prefix)
}

// Counts says how many calls were recorded, by answer.
func (c *Calls) Counts() (acked, unknown, refused int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.acked), len(c.maybes), c.refused
}

func (c *Calls) excluded(m *pb.ListenResponse) bool {
	for _, p := range c.exclude {
		if strings.HasPrefix(m.GetReservation().GetResourceId(), p) {
			return true
		}
	}
	return false
}

// Check compares what each listener heard, subscribed after seq after, with the calls: every
// listener must have heard the seqs after+1, after+2, ... without a gap or a repeat, the same
// changes in the same order as every other listener, each acknowledged change exactly once,
// and no change but acknowledged ones and at most one per call of unknown outcome. It returns
// one line per discrepancy (at most a few of each kind), none when all is well.
func (c *Calls) Check(after uint64, listeners ...[]*pb.ListenResponse) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	report := func(kind string, n *int, format string, args ...any) {
		*n++
		if *n <= 5 {
			out = append(out, kind+": "+fmt.Sprintf(format, args...))
		}
	}
	for li, heard := range listeners {
		name := fmt.Sprintf("listener %d", li)
		var gaps, repeats, unexplained, missing, twice int
		want := after + 1
		heardCount := map[Change]int{}
		used := make([]bool, len(c.maybes))
		for _, m := range heard {
			switch {
			case m.GetSeq() < want:
				report(name, &repeats, "seq %d heard again (after %d)", m.GetSeq(), want-1)
				continue
			case m.GetSeq() > want:
				report(name, &gaps, "gap: seq %d after %d", m.GetSeq(), want-1)
			}
			want = m.GetSeq() + 1
			if c.excluded(m) {
				continue
			}
			ch := Heard(m)
			heardCount[ch]++
			if heardCount[ch] > 1 {
				report(name, &twice, "%s heard %d times (seq %d)", ch, heardCount[ch], m.GetSeq())
				continue
			}
			if slices.Contains(c.acked, ch) {
				continue
			}
			explained := false
			for i, mb := range c.maybes {
				if !used[i] && mb.op == ch.Op && (mb.id == "" || mb.id == ch.ID) && (mb.note == "" || mb.note == m.GetReservation().GetNote()) {
					used[i], explained = true, true
					break
				}
			}
			if !explained {
				report(name, &unexplained, "seq %d %s: no call made it or might have (a refused call wrote?)", m.GetSeq(), ch)
			}
		}
		for _, ch := range c.acked {
			if heardCount[ch] == 0 {
				report(name, &missing, "acknowledged %s never heard", ch)
			}
		}
	}
	// Every listener heard the same feed.
	for li := 1; li < len(listeners); li++ {
		a, b := listeners[0], listeners[li]
		for i := range min(len(a), len(b)) {
			if a[i].GetSeq() != b[i].GetSeq() || Heard(a[i]) != Heard(b[i]) {
				out = append(out, fmt.Sprintf("listeners 0 and %d differ at their change %d: seq %d %s, seq %d %s",
					li, i, a[i].GetSeq(), Heard(a[i]), b[i].GetSeq(), Heard(b[i])))
				break
			}
		}
		if len(a) != len(b) {
			out = append(out, fmt.Sprintf("listeners 0 and %d heard %d and %d changes", li, len(a), len(b)))
		}
	}
	return out
}
