package service_test

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"reservation"
	pb "reservation/proto/reservation/v1"
	"reservation/service"
)

// A recorded history of the calls a test's clients made, and a checker of its refusals and
// acknowledgements. The checker knows nothing of the store: it judges each answer by what the
// other calls could have done at the time, so a test that cancels (and so shrinks the stored
// rows) can still check that every refusal was due.

// histOp is what a recorded call asked for.
type histOp int

const (
	opReserve histOp = iota + 1 // a Reserve or a ReserveBatch of Items
	opCancel                    // a Cancel of the reservation ID
)

// histOutcome is how a recorded call ended, as far as the client can tell.
type histOutcome int

const (
	outUnknown  histOutcome = iota // an error that does not say whether anything was written
	outOK                          // done: Booked names what a Reserve made
	outConflict                    // RESERVATION_CONFLICT naming Named: nothing written
	outPoolFull                    // POOL_FULL: nothing written
)

// histWindow is a reservation's window: one asked for, or one a reservation holds.
type histWindow struct{ Start, End time.Time }

func (w histWindow) overlaps(o histWindow) bool {
	return w.Start.Before(o.End) && o.Start.Before(w.End)
}

// same reports whether w and o are one window (time.Time's == also compares locations).
func (w histWindow) same(o histWindow) bool { return w.Start.Equal(o.Start) && w.End.Equal(o.End) }

func (w histWindow) String() string {
	return reservation.FormatTime(w.Start) + "–" + reservation.FormatTime(w.End)
}

// histItem is one reservation a Reserve asked for: of Resource, or, when that is empty, of a
// unit of Pool.
type histItem struct {
	Resource, Pool string
	histWindow
}

// histBooked is one reservation a Reserve made, as acknowledged.
type histBooked struct {
	ID, Resource string
	histWindow
}

// histNamed is one reservation a conflict names, with its window and the index of the item it
// is in the way of.
type histNamed struct {
	ID   string
	Item int
	histWindow
}

// histCall is one call of the history. Invoked and Returned are read from one monotonic clock
// (the test process's: every client is one of its goroutines), just before the call is sent and
// just after its answer came.
type histCall struct {
	Invoked, Returned time.Duration
	Op                histOp
	Items             []histItem // opReserve
	ID                string     // opCancel
	Outcome           histOutcome
	Booked            []histBooked // opReserve, outOK: Items as made, in order
	Named             []histNamed  // outConflict
	Truncated         bool         // outConflict: the conflict names only some of those in the way
}

// inventory is what the checker knows of the resources: their capacities (absent or 0 means
// 1) and the enabled units of each pool.
type inventory struct {
	Capacity map[string]int
	Pools    map[string][]string
}

func (inv inventory) capacity(resource string) int { return max(inv.Capacity[resource], 1) }

// mayHold reports whether h holds resource, or may (a pool booking of unknown outcome).
func (inv inventory) mayHold(h *maybeHeld, resource string) bool {
	return h.resource == resource || (h.resource == "" && slices.Contains(inv.Pools[h.pool], resource))
}

// historyReport is what checkHistory found: the figures a test logs, and each answer that no
// order of the calls explains.
type historyReport struct {
	Reserved, Refused, Cancelled int // acknowledged reservations, refused Reserves, acknowledged Cancels
	Unknown                      int // calls whose outcome is unknown
	NamedChecked                 int // reservations named by conflicts, each checked
	Problems                     []string
}

// maybeHeld is a reservation that a Reserve made, or may have made (its outcome is unknown).
type maybeHeld struct {
	call               int    // index of its Reserve in the history
	id                 string // "" when the Reserve's outcome is unknown
	resource, pool     string // resource "" when an unknown pool booking, which may hold any unit of pool
	w                  histWindow
	invoked            time.Duration // its Reserve was sent
	acked              time.Duration // its Reserve was acknowledged (when id is set)
	cancelSent, cancel time.Duration // the first Cancel of it was sent; the first acknowledged Cancel of it came back
}

// never is later than any instant of a history.
const never = time.Duration(1<<63 - 1)

// checkHistory checks a history against the admission rule: a resource of capacity N holds at
// most N reservations at an instant, and a Reserve is refused only when that would be broken.
//
//   - A reservation is possibly live during a call C when its Reserve was sent before C's
//     answer came and no Cancel of it was acknowledged before C was sent. A Reserve whose
//     outcome is unknown counts as made (of any unit of its pool, for a pool booking).
//   - A RESERVATION_CONFLICT is due when, for some item of the call, at some instant of its
//     window, reservations possibly live during the call and the call's other items fill the
//     item's resource. Each reservation it names is one of those (or another item of the call),
//     overlaps the item, and is named with its window; the ones named for an item fill its
//     resource by themselves at some instant of its window (unless the list is truncated).
//   - A POOL_FULL is due when some pool item finds every enabled unit of its pool full so.
//   - Reservations certainly live together never overfill a resource: at the instant one is
//     acknowledged, every other one acknowledged by then and whose Cancel (if any) was not yet
//     sent is stored beside it.
//
// The rules lean towards an answer being due wherever the client cannot tell, so what is
// reported is wrong under any order of the calls consistent with their times.
func checkHistory(inv inventory, calls []histCall) historyReport {
	var rep historyReport
	problem := func(format string, args ...any) { rep.Problems = append(rep.Problems, fmt.Sprintf(format, args...)) }

	var held []*maybeHeld
	byID := map[string]*maybeHeld{}
	for n, c := range calls {
		if c.Op != opReserve || (c.Outcome != outOK && c.Outcome != outUnknown) {
			continue
		}
		if c.Outcome == outUnknown {
			rep.Unknown++
			for _, it := range c.Items {
				held = append(held, &maybeHeld{call: n, resource: it.Resource, pool: it.Pool, w: it.histWindow, invoked: c.Invoked, cancelSent: never, cancel: never})
			}
			continue
		}
		if len(c.Booked) != len(c.Items) {
			problem("call %d asked for %d reservations and was acknowledged with %d", n, len(c.Items), len(c.Booked))
			continue
		}
		for i, b := range c.Booked {
			it := c.Items[i]
			switch {
			case !b.same(it.histWindow):
				problem("call %d asked for %s and was acknowledged with %s (%s)", n, it.histWindow, b.ID, b.histWindow)
			case it.Resource != "" && b.Resource != it.Resource, it.Resource == "" && !slices.Contains(inv.Pools[it.Pool], b.Resource):
				problem("call %d asked for %q (pool %q) and was acknowledged with %s on %q", n, it.Resource, it.Pool, b.ID, b.Resource)
			case byID[b.ID] != nil:
				problem("reservation %s was acknowledged by calls %d and %d", b.ID, byID[b.ID].call, n)
				continue
			}
			h := &maybeHeld{call: n, id: b.ID, resource: b.Resource, pool: it.Pool, w: b.histWindow, invoked: c.Invoked, acked: c.Returned, cancelSent: never, cancel: never}
			held = append(held, h)
			byID[b.ID] = h
			rep.Reserved++
		}
	}
	for _, c := range calls {
		if c.Op != opCancel {
			continue
		}
		if c.Outcome == outOK {
			rep.Cancelled++
		} else if c.Outcome == outUnknown {
			rep.Unknown++
		}
		h := byID[c.ID]
		if h == nil {
			continue // not a reservation this history made: nothing to undo
		}
		h.cancelSent = min(h.cancelSent, c.Invoked)
		if c.Outcome == outOK {
			h.cancel = min(h.cancel, c.Returned)
		}
	}

	// liveDuring lists the reservations possibly live during the call c, n in the history.
	liveDuring := func(n int, c histCall) []*maybeHeld {
		var live []*maybeHeld
		for _, h := range held {
			if h.call != n && h.invoked <= c.Returned && !(h.cancel < c.Invoked) {
				live = append(live, h)
			}
		}
		return live
	}
	// taken is the most places of resource that live and the call's items other than i take
	// at one instant of item i's window.
	taken := func(c histCall, i int, resource string, live []*maybeHeld) int {
		w := c.Items[i].histWindow
		var ws []histWindow
		for _, h := range live {
			if inv.mayHold(h, resource) && h.w.overlaps(w) {
				ws = append(ws, h.w)
			}
		}
		for j, it := range c.Items {
			if j != i && (it.Resource == resource || (it.Resource == "" && slices.Contains(inv.Pools[it.Pool], resource))) && it.overlaps(w) {
				ws = append(ws, it.histWindow)
			}
		}
		return peakWithin(w, ws)
	}

	for n, c := range calls {
		if c.Op != opReserve || (c.Outcome != outConflict && c.Outcome != outPoolFull) {
			continue
		}
		rep.Refused++
		live := liveDuring(n, c)
		due := false
		var seen []string
		for i, it := range c.Items {
			switch {
			case c.Outcome == outConflict && it.Resource != "":
				k := taken(c, i, it.Resource, live)
				due = due || k >= inv.capacity(it.Resource)
				seen = append(seen, fmt.Sprintf("%s %s: %d of %d places", it.Resource, it.histWindow, k, inv.capacity(it.Resource)))
			case c.Outcome == outPoolFull && it.Resource == "":
				full := true
				for _, u := range inv.Pools[it.Pool] {
					k := taken(c, i, u, live)
					full = full && k >= inv.capacity(u)
					seen = append(seen, fmt.Sprintf("%s %s: %d of %d places", u, it.histWindow, k, inv.capacity(u)))
				}
				due = due || full
			}
		}
		what := map[histOutcome]string{outConflict: service.ConflictReason, outPoolFull: reservation.ReasonPoolFull}[c.Outcome]
		if !due {
			problem("call %d (%v–%v) was refused with %s, but reservations possibly live during it take at most %s", n, c.Invoked, c.Returned, what, strings.Join(seen, "; "))
		}
		if c.Outcome == outConflict {
			checkNamed(inv, n, c, live, byID, &rep, problem)
		}
	}

	checkCertainlyLive(inv, held, problem)
	return rep
}

// checkNamed checks the reservations a conflict names (see checkHistory).
func checkNamed(inv inventory, n int, c histCall, live []*maybeHeld, byID map[string]*maybeHeld, rep *historyReport, problem func(string, ...any)) {
	if len(c.Named) == 0 {
		problem("call %d was refused with a conflict that names no reservation", n)
		return
	}
	perItem := map[int][]histWindow{}
	for _, x := range c.Named {
		rep.NamedChecked++
		if x.Item < 0 || x.Item >= len(c.Items) || c.Items[x.Item].Resource == "" {
			problem("call %d: the conflict names %s in the way of item %d, not a direct booking of the call", n, x.ID, x.Item)
			continue
		}
		it := c.Items[x.Item]
		if !x.overlaps(it.histWindow) {
			problem("call %d: the conflict names %s (%s), which does not overlap %s", n, x.ID, x.histWindow, it.histWindow)
			continue
		}
		perItem[x.Item] = append(perItem[x.Item], x.histWindow)
		if h := byID[x.ID]; h != nil {
			switch {
			case h.resource != it.Resource:
				problem("call %d: the conflict names %s, a reservation of %s, in the way on %s", n, x.ID, h.resource, it.Resource)
			case !h.w.same(x.histWindow):
				problem("call %d: the conflict names %s with the window %s; it holds %s", n, x.ID, x.histWindow, h.w)
			case !slices.Contains(live, h):
				problem("call %d (%v–%v): the conflict names %s, which was not live then (sent at %v, cancelled at %v)", n, c.Invoked, c.Returned, x.ID, h.invoked, h.cancel)
			}
			continue
		}
		// Not acknowledged to anyone: another item of the call, or a reservation whose Reserve
		// has an unknown outcome.
		explained := false
		for j, o := range c.Items {
			explained = explained || (j != x.Item && o.Resource == it.Resource && o.same(x.histWindow))
		}
		for _, h := range live {
			explained = explained || (h.id == "" && inv.mayHold(h, it.Resource) && h.w.same(x.histWindow))
		}
		if !explained {
			problem("call %d: the conflict names %s (%s), which no call of the history made", n, x.ID, x.histWindow)
		}
	}
	if c.Truncated {
		return
	}
	for i, ws := range perItem {
		it := c.Items[i]
		if k := peakWithin(it.histWindow, ws); k < inv.capacity(it.Resource) {
			problem("call %d: the conflict names %d reservations in the way of %s %s, which take at most %d of its %d places at once", n, len(ws), it.Resource, it.histWindow, k, inv.capacity(it.Resource))
		}
	}
}

// checkCertainlyLive checks that reservations certainly stored together never overfill a
// resource. A reservation is certainly stored from its acknowledgement until its first
// Cancel is sent; at each acknowledgement, those certainly stored then are counted.
func checkCertainlyLive(inv inventory, held []*maybeHeld, problem func(string, ...any)) {
	reported := map[string]bool{}
	for _, a := range held {
		if a.id == "" {
			continue
		}
		var together []*maybeHeld
		for _, h := range held {
			if h.id != "" && h.resource == a.resource && h.acked <= a.acked && a.acked < h.cancelSent {
				together = append(together, h)
			}
		}
		ws := make([]histWindow, len(together))
		for i, h := range together {
			ws[i] = h.w
		}
		if k := peakWithin(histWindow{Start: time.Unix(-1<<40, 0), End: time.Unix(1<<40, 0)}, ws); k > inv.capacity(a.resource) && !reported[a.resource] {
			reported[a.resource] = true // once per resource: the first overbooking says enough
			var ids []string
			for _, h := range together {
				ids = append(ids, h.id+" "+h.w.String())
			}
			problem("at %v, %d reservations of %s (capacity %d) were stored at one instant: of %s", a.acked, k, a.resource, inv.capacity(a.resource), strings.Join(ids, ", "))
		}
	}
}

// peakWithin is the most of ws that hold one instant of w (windows are half-open). It sweeps
// the starts and ends that fall in w, in time order, an end before a start at the same instant.
func peakWithin(w histWindow, ws []histWindow) int {
	type edge struct {
		at    time.Time
		delta int
	}
	var edges []edge
	for _, x := range ws {
		if x.overlaps(w) {
			edges = append(edges, edge{latest(x.Start, w.Start), +1}, edge{earliest(x.End, w.End), -1})
		}
	}
	slices.SortFunc(edges, func(a, b edge) int { return cmp.Or(a.at.Compare(b.at), cmp.Compare(a.delta, b.delta)) })
	peak, now := 0, 0
	for _, e := range edges {
		now += e.delta
		peak = max(peak, now)
	}
	return peak
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// histRecorder collects a history from many goroutines. Its clock is time.Since one start, which
// Go reads from the monotonic clock.
type histRecorder struct {
	start time.Time
	mu    sync.Mutex
	calls []histCall
}

func newHistRecorder() *histRecorder { return &histRecorder{start: time.Now()} }

// now is the instant to stamp a call with.
func (r *histRecorder) now() time.Duration { return time.Since(r.start) }

func (r *histRecorder) add(c histCall) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, c)
}

func (r *histRecorder) history() []histCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// itemOf is how a history records a requested reservation.
func itemOf(r *pb.Reservation) histItem {
	return histItem{Resource: r.GetResourceId(), Pool: r.GetPoolId(), histWindow: histWindow{r.GetStart().AsTime(), r.GetEnd().AsTime()}}
}

// settleReserve records the answer of a Reserve or ReserveBatch in c.
func settleReserve(c *histCall, made []*pb.Reservation, err error) {
	if err == nil {
		c.Outcome = outOK
		for _, r := range made {
			c.Booked = append(c.Booked, histBooked{ID: r.GetId(), Resource: r.GetResourceId(), histWindow: histWindow{r.GetStart().AsTime(), r.GetEnd().AsTime()}})
		}
		return
	}
	st := status.Convert(err)
	ei := conflictInfo(st)
	switch {
	case st.Code() != codes.FailedPrecondition || ei == nil:
		c.Outcome = outUnknown
	case ei.GetReason() == reservation.ReasonPoolFull:
		c.Outcome = outPoolFull
	case ei.GetReason() == service.ConflictReason:
		c.Outcome = outConflict
		md := ei.GetMetadata()
		c.Truncated = md["conflicts_truncated"] == "true"
		count, _ := strconv.Atoi(md["conflict_count"])
		for n := range count {
			k := fmt.Sprintf("conflict_%d_", n)
			item, ierr := strconv.Atoi(md[k+"item"])
			start, serr := time.Parse(time.RFC3339Nano, md[k+"start"])
			end, eerr := time.Parse(time.RFC3339Nano, md[k+"end"])
			if ierr != nil || serr != nil || eerr != nil {
				item = -1 // unreadable: the checker reports it
			}
			c.Named = append(c.Named, histNamed{ID: md[k+"id"], Item: item, histWindow: histWindow{start, end}})
		}
	default:
		c.Outcome = outUnknown
	}
}

// settleCancel records the answer of a Cancel in c.
func settleCancel(c *histCall, err error) {
	if err == nil {
		c.Outcome = outOK
	} else {
		c.Outcome = outUnknown
	}
}
