package reservation

import (
	"context"
	"fmt"
	"math/bits"
	"slices"
	"sort"
	"time"
)

// SearchAvailability: which resources of the catalogue (those a label selector picks), or
// which unit of a pool, could be booked for a window, or for a length within a range, now.
// Every window it offers is judged as Reserve judges one, by the same functions: the
// resource is enabled, its booking rules admit the window (Rules.Check, SlotQuery.Bookable),
// and the window fits beside its live reservations, buffers and capacity counted (Fits),
// places times over; lapsed holds take nothing. A resource is in the search only if it is
// in the catalogue (a resources row), so the strict catalogue refuses none it offers.

// Limits of a search; past them, a call is INVALID_ARGUMENT or answers a page.
const (
	DefaultSearchPageSize = 50
	MaxSearchPageSize     = 500
	// MaxSearchRange bounds a search's window or range.
	MaxSearchRange = 366 * 24 * time.Hour
	// MinSearchStep is the finest grid of starts a range search may ask for (0 is no grid).
	MinSearchStep = time.Minute
	// MaxSearchExamined bounds the catalogue entries one call reads: past it, the call
	// answers what it found with a page token that goes on from there.
	MaxSearchExamined = 5_000
	// MaxSearchRows bounds the reservations one call reads, as MaxFreeSlotsRows bounds
	// FreeSlots': past it the call is INVALID_ARGUMENT on the window's end.
	MaxSearchRows = 50_000
	// MaxSearchWork bounds the weighing one call does: each window judged costs the
	// reservations it is weighed beside (their square, on a resource of capacity above 1,
	// where the peak is sought). Past it the call is INVALID_ARGUMENT on the window's end, as
	// for MaxSearchRows: a long range over a resource crowded with reservations.
	MaxSearchWork = 50_000_000
	// searchBatch is the most catalogue entries one read of the source returns, and
	// minSearchBatch the fewest the first read asks for.
	searchBatch    = 500
	minSearchBatch = 32
)

// SearchQuery asks where a booking could be made now.
type SearchQuery struct {
	// Start and End are the window [Start, End) to book; with Duration, the range the
	// windows offered lie in.
	Start, End time.Time
	// Duration, when not zero, asks for a window this long inside [Start, End): each
	// resource's earliest.
	Duration time.Duration
	// Step, with Duration, puts the starts offered on Start + k·Step; 0 is any instant.
	Step time.Duration
	// PoolID asks for the pool's first unit, by id, that fits (the unit Reserve would book);
	// Selector, instead, for every resource of the catalogue it matches (selector.go).
	PoolID   string
	Selector string
	// Places is how many reservations of the window the resource must take beside what it
	// holds (a batch of that many would be admitted); 0 means 1.
	Places int
	// PageSize bounds the results (0: DefaultSearchPageSize; more than MaxSearchPageSize is
	// cut to it). After goes on after this resource id (SearchPage.Next).
	PageSize int
	After    string
	// NotPast, when set, is now for the rule that refuses windows in the past: a window
	// searched must end after it (as Reserve refuses one that does not, BLOCKED ones
	// excepted), and with a range, every window offered starts at or after it (as FreeSlots'
	// windows do).
	NotPast time.Time

	sel Selector // Selector, parsed by Validate
}

// Ranged reports whether q asks for a length within a range rather than a window.
func (q *SearchQuery) Ranged() bool { return q.Duration != 0 }

// Validate checks a search and names every field that is wrong, as the wire names them:
// start and end for a window, range_start, range_end and duration for a range.
func (q *SearchQuery) Validate() error {
	var v Violations
	startF, endF := "start", "end"
	if q.Ranged() {
		startF, endF = "range_start", "range_end"
	}
	v.Time(startF, q.Start, true)
	v.Time(endF, q.End, true)
	span := q.End.Sub(q.Start)
	switch {
	case q.Start.IsZero() || q.End.IsZero():
	case span <= 0:
		v.Add(endF, fmt.Sprintf("must be after %s (%s), got %s", startF, FormatTime(q.Start), FormatTime(q.End)))
	case span > MaxSearchRange:
		v.Add(endF, fmt.Sprintf("the search spans %s, longer than the %s allowed", span, MaxSearchRange))
	}
	switch {
	case q.Duration < 0:
		v.Add("duration", fmt.Sprintf("must not be negative, got %s", q.Duration))
	case q.Ranged() && span > 0 && q.Duration > span:
		v.Add("duration", fmt.Sprintf("must fit in the range (%s), got %s", span, q.Duration))
	}
	switch {
	case q.Step != 0 && !q.Ranged():
		v.Add("step", "is only for a search with a duration")
	case q.Step < 0 || (q.Step > 0 && q.Step < MinSearchStep):
		v.Add("step", fmt.Sprintf("must be 0 (any instant) or at least %s, got %s", MinSearchStep, q.Step))
	}
	switch {
	case q.PoolID != "" && q.Selector != "":
		v.Add("selector", "give pool_id or selector, not both")
	case q.PoolID != "":
		v.ID("pool_id", q.PoolID)
	default:
		sel, err := ParseSelector(q.Selector)
		if err != nil {
			v.Add("selector", err.Error())
		}
		q.sel = sel
	}
	if q.Places < 0 || q.Places > MaxCapacity {
		v.Add("places", fmt.Sprintf("must be between 0 (meaning 1) and %d, got %d", MaxCapacity, q.Places))
	}
	if q.PageSize < 0 {
		v.Add("page_size", fmt.Sprintf("must not be negative, got %d", q.PageSize))
	}
	if q.After != "" {
		v.ID("page_token", q.After)
	}
	return v.Err()
}

// Offer is a window a search found bookable: on ResourceID (of PoolID, if any), with
// Available places free throughout it (at least the places asked for).
type Offer struct {
	ResourceID, PoolID string
	Start, End         time.Time
	Available          int
}

// SearchPage is a search's answer: its offers, by resource id, and where the next page
// starts (Next, a resource id to pass as After; "" when the search is done). A page may hold
// fewer offers than asked, or none, and still have a Next: the call read MaxSearchExamined
// catalogue entries. Examined and Rows count what it read (catalogue entries, reservations).
type SearchPage struct {
	Offers   []Offer
	Next     string
	Examined int
	Rows     int
}

// Span is a window on one resource: the live reservations a search reads are those on it
// whose booked window overlaps it.
type Span struct {
	ResourceID string
	Start, End time.Time
}

// AvailabilitySource is what a search reads: the catalogue and the live reservations. The
// database implements it (repo.Store: consistency STRONG), and so may an index in memory.
type AvailabilitySource interface {
	// SearchResources returns up to limit resources of the catalogue whose ids come after
	// after, by id: with pool not "", the units of that pool only.
	SearchResources(ctx context.Context, pool, after string, limit int) ([]*Resource, error)
	// Booked returns the reservations live at now (lapsed holds left out) on each span's
	// resource whose booked window overlaps the span, by resource, start and id. Past limit
	// in all it may stop at limit+1.
	Booked(ctx context.Context, spans []Span, now time.Time, limit int) ([]*Reservation, error)
}

// Search answers q from src at now (the clock the rules are read by, as a write reads it).
// It reads the catalogue by id from q.After on, in batches that grow from twice the page to
// searchBatch entries, and the reservations of the candidates of each batch in one read; it
// stops at a full page, at the catalogue's end, or after MaxSearchExamined entries.
func Search(ctx context.Context, src AvailabilitySource, q SearchQuery, now time.Time) (*SearchPage, error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	size := OrDefault(q.PageSize, DefaultSearchPageSize)
	size = min(size, MaxSearchPageSize)
	page := &SearchPage{}
	if !q.Ranged() && !q.NotPast.IsZero() && !q.End.After(q.NotPast) {
		return page, nil // a window in the past: Reserve would refuse it
	}
	after := q.After
	work := 0 // the weighing done: MaxSearchWork
	// The first read is twice the page (at least minSearchBatch entries), and each one after
	// it twice the one before, up to searchBatch: a selector that matches much reads little
	// more than the page, one that matches little reaches full batches soon.
	batch := min(max(2*size, minSearchBatch), searchBatch)
	if q.PoolID != "" {
		batch = minSearchBatch
	}
	for page.Examined < MaxSearchExamined {
		limit := min(batch, MaxSearchExamined-page.Examined)
		batch = min(2*batch, searchBatch)
		rs, err := src.SearchResources(ctx, q.PoolID, after, limit)
		if err != nil {
			return nil, err
		}
		page.Examined += len(rs)
		var cands []*Resource
		var spans []Span
		for _, r := range rs {
			if q.PoolID == "" && !q.sel.Matches(r.Labels) {
				continue
			}
			if sp, ok := q.span(r, now); ok {
				cands = append(cands, r)
				spans = append(spans, sp)
			}
		}
		if len(cands) > 0 {
			busy, err := src.Booked(ctx, spans, now, MaxSearchRows-page.Rows)
			if err != nil {
				return nil, err
			}
			if page.Rows += len(busy); page.Rows > MaxSearchRows {
				return nil, q.tooMuch(fmt.Sprintf("the search meets more than %d reservations, more than one call reads", MaxSearchRows))
			}
			byResource := map[string][]*Reservation{}
			for _, b := range busy {
				if !b.Expired(now) {
					byResource[b.ResourceID] = append(byResource[b.ResourceID], b)
				}
			}
			for i, r := range cands {
				o, ok := q.offer(r, byResource[r.ID], now, &work)
				if work > MaxSearchWork {
					return nil, q.tooMuch(fmt.Sprintf("the search weighs more windows beside more reservations than one call does (%d)", MaxSearchWork))
				}
				if !ok {
					continue
				}
				page.Offers = append(page.Offers, o)
				if q.PoolID != "" {
					return page, nil // the pool's first unit that fits: the one Reserve books
				}
				if len(page.Offers) == size {
					if i < len(cands)-1 || len(rs) == limit {
						page.Next = r.ID
					}
					return page, nil
				}
			}
		}
		if len(rs) < limit {
			return page, nil // the catalogue's end
		}
		after = rs[len(rs)-1].ID
	}
	page.Next = after
	return page, nil
}

// tooMuch is the error of a search that would cost more than one call does, on its end.
func (q *SearchQuery) tooMuch(why string) error {
	field := "end"
	if q.Ranged() {
		field = "range_end"
	}
	var v Violations
	v.Add(field, why+": ask for a shorter window or range, fewer resources or a smaller page")
	return v.Err()
}

// places is how many places q asks for.
func (q *SearchQuery) places() int { return max(q.Places, 1) }

// span returns the window whose reservations decide whether r offers anything for q, and
// false when nothing needs reading: r is disabled, or its booking rules refuse every window
// q could offer (as Rules.Check would, through Rules.Starts and SlotQuery.Bookable).
func (q *SearchQuery) span(r *Resource, now time.Time) (Span, bool) {
	if r.Disabled {
		return Span{}, false
	}
	g := PolicyOf(r).Gap()
	if !q.Ranged() {
		if r.Rules.Check(0, q.candidate(r, q.Start, q.End), now) != nil {
			return Span{}, false
		}
		return Span{r.ID, q.Start.Add(-g), q.End.Add(g)}, true
	}
	if (r.MinDuration > 0 && q.Duration < r.MinDuration) || (r.MaxDuration > 0 && q.Duration > r.MaxDuration) {
		return Span{}, false
	}
	b := SlotQuery{Start: q.Start, End: q.End, MinDuration: q.Duration}.Bookable(r.Rules, now)
	if b.Empty() || b.End.Sub(b.Start) < q.Duration {
		return Span{}, false
	}
	end := b.End
	if !b.LatestStart.IsZero() && b.LatestStart.Add(q.Duration).Before(end) {
		end = b.LatestStart.Add(q.Duration)
	}
	return Span{r.ID, b.Start.Add(-g), end.Add(g)}, true
}

// candidate is the reservation a booking of [start, end) on r would make.
func (q *SearchQuery) candidate(r *Resource, start, end time.Time) *Reservation {
	return &Reservation{ResourceID: r.ID, PoolID: r.PoolID, Status: StatusPending, Start: start, End: end}
}

// offer returns what r offers for q beside busy (its live reservations the span read, by
// start), and false when nothing.
func (q *SearchQuery) offer(r *Resource, busy []*Reservation, now time.Time, work *int) (Offer, bool) {
	if !q.Ranged() {
		return q.offerAt(r, q.Start, q.End, busy, now, work)
	}
	// The earliest start that fits is the first of these that does, each put on the grid:
	// the range's start, the rules' earliest start, NotPast, and the instants where a
	// reservation stops blocking (its end plus the gap).
	// Between two of them the reservations a window meets only grow, so none starts earlier.
	p := PolicyOf(r)
	g := p.Gap()
	from := q.Start
	if e := r.Rules.Starts(now).Earliest; e.After(from) {
		from = e
	}
	if q.NotPast.After(from) {
		from = q.NotPast // as FreeSlots answers: a window that began before now is no offer
	}
	starts := []time.Time{q.onGrid(from)}
	for _, b := range busy {
		if t := b.End.Add(g); t.After(from) {
			starts = append(starts, q.onGrid(t))
		}
	}
	starts = sortedTimes(starts)
	latest := r.Rules.Starts(now).Latest
	for _, s := range starts {
		e := s.Add(q.Duration)
		if e.After(q.End) || (!latest.IsZero() && s.After(latest)) {
			break
		}
		if o, ok := q.offerAt(r, s, e, busy, now, work); ok {
			return o, true
		}
		if *work > MaxSearchWork {
			break
		}
	}
	return Offer{}, false
}

// onGrid is the first instant at or after t on q's grid of starts.
func (q *SearchQuery) onGrid(t time.Time) time.Time {
	if q.Step <= 0 || !t.After(q.Start) {
		return t
	}
	n := (t.Sub(q.Start) + q.Step - 1) / q.Step
	return q.Start.Add(n * q.Step)
}

// offerAt judges a booking of [start, end) on r, as Reserve judges it: r enabled, its rules
// (Rules.Check) admit it at now, it fits beside busy (Fits), and the places left throughout
// its blocked window (available, from FirstFull) are at least q's places, as a batch of that
// many copies is admitted. It adds the weighing it did to work.
func (q *SearchQuery) offerAt(r *Resource, start, end time.Time, busy []*Reservation, now time.Time, work *int) (Offer, bool) {
	if r.Disabled {
		return Offer{}, false
	}
	c := q.candidate(r, start, end)
	if r.Rules.Check(0, c, now) != nil {
		return Offer{}, false
	}
	p := PolicyOf(r)
	held := meeting(busy, start, end, p.Gap())
	n := len(held)
	*work += n + 1
	if p.Capacity > 1 {
		*work += n * n // the peak Fits seeks
	}
	if !Fits(c, p, held) {
		return Offer{}, false
	}
	left := 1
	if p.Capacity > 1 {
		*work += n * n * bits.Len(uint(n)) // available halves the count
		left = available(c, p, held)
	}
	if left < q.places() {
		return Offer{}, false
	}
	return Offer{ResourceID: r.ID, PoolID: r.PoolID, Start: start, End: end, Available: left}, true
}

// meeting narrows busy (by start) to those that may block [start, end) on a resource whose
// buffers add up to gap: Fits weighs the rest, which cannot meet it, for nothing.
func meeting(busy []*Reservation, start, end time.Time, gap time.Duration) []*Reservation {
	hi := sort.Search(len(busy), func(i int) bool { return !busy[i].Start.Before(end.Add(gap)) })
	var out []*Reservation
	for _, b := range busy[:hi] {
		if b.End.Add(gap).After(start) {
			out = append(out, b)
		}
	}
	return slices.Clip(out)
}

// available is the places left throughout c's blocked window beside held: the capacity less
// the most of held's blocked windows that meet at one instant of it (FirstFull, found by
// halving the count).
func available(c *Reservation, p Policy, held []*Reservation) int {
	capacity := max(p.Capacity, 1)
	start, end := p.Blocks(c)
	lo, hi := 0, len(held) // the peak is in [lo, hi]
	for lo < hi {
		mid := (lo + hi + 1) / 2
		at := p
		at.Capacity = mid
		if _, _, full := FirstFull(start, end, at, held); full {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return capacity - lo
}

// Searcher answers SearchAvailability; repo.Store does, from the database.
type Searcher interface {
	SearchAvailability(ctx context.Context, q SearchQuery) (*SearchPage, error)
}
