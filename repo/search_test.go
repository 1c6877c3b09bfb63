package repo_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"reservation"
	"reservation/repo"
	"reservation/repo/repotest"
)

// searchGrid is the grain of every instant in TestSearchAgainstBruteForce: the clock, the
// bookings, the buffers and the rules are multiples of it, so that the brute force, which
// looks at every multiple, sees every instant where anything changes.
const searchGrid = 15 * time.Minute

// bruteResource is what the brute force knows of a resource: what the test put.
type bruteResource struct {
	*reservation.Resource
	booked []*reservation.Reservation // live at the clock of the check
}

// bruteFits is the brute-force admission of places bookings of [s, e) on r at now, written
// from the rules' definitions and not through the domain's functions: enabled; the length
// within min and max duration; the start within now+min_notice and now+max_advance; the end
// after now; and at every grid instant of the blocked window [s-before, e+after), at most
// capacity-places of the booked ones' blocked windows cover it.
func bruteFits(r bruteResource, s, e time.Time, places int, now time.Time) bool {
	d := e.Sub(s)
	switch {
	case r.Disabled,
		r.MinDuration > 0 && d < r.MinDuration,
		r.MaxDuration > 0 && d > r.MaxDuration,
		r.MinNotice > 0 && s.Before(now.Add(r.MinNotice)),
		r.MaxAdvance > 0 && s.After(now.Add(r.MaxAdvance)),
		!e.After(now):
		return false
	}
	capacity := max(r.Capacity, 1)
	for t := s.Add(-r.BufferBefore); t.Before(e.Add(r.BufferAfter)); t = t.Add(searchGrid) {
		n := 0
		for _, b := range r.booked {
			if !t.Before(b.Start.Add(-r.BufferBefore)) && t.Before(b.End.Add(r.BufferAfter)) {
				n++
			}
		}
		if n+places > capacity {
			return false
		}
	}
	return true
}

// searchTerm is a selector term with its meaning, so that the brute force picks resources
// without the parser.
type searchTerm struct {
	text  string
	match func(map[string]string) bool
}

var searchTerms = []searchTerm{
	{"view=sea", func(l map[string]string) bool { return l["view"] == "sea" }},
	{"view!=sea", func(l map[string]string) bool { return l["view"] != "sea" }},
	{"view in (garden, city)", func(l map[string]string) bool { return l["view"] == "garden" || l["view"] == "city" }},
	{"view notin (city)", func(l map[string]string) bool { return l["view"] != "city" }},
	{"balcony", func(l map[string]string) bool { _, ok := l["balcony"]; return ok }},
	{"!balcony", func(l map[string]string) bool { _, ok := l["balcony"]; return !ok }},
	{"beds>=2", func(l map[string]string) bool { return l["beds"] == "2" || l["beds"] == "3" }},
	{"beds<2", func(l map[string]string) bool { return l["beds"] == "1" }},
}

// TestSearchAgainstBruteForce: on random catalogues (labels, pools, capacities, buffers,
// rules, disabled units) with random bookings (holds among them, some lapsed), every search
// (a window, or a length within a range on a grid of starts or on none; a selector or a
// pool; one or two places) is compared with a brute-force scan of every grid instant:
//   - a window: the resources offered are exactly those the brute force finds free; each
//     offered is booked for real (places reservations in one Reserve, which must succeed,
//     then cancelled), and each matched resource left out is tried with Reserve, which must
//     fail;
//   - a range: each matched resource's offer is its earliest start the brute force finds,
//     or none when it finds none; each offer is booked for real;
//   - a pool: the unit offered is the first the brute force finds free, and a Reserve of the
//     pool books that very unit.
//
// Broken on purpose, it fails: with the buffers left out of the search's policy (offerAt
// weighing PolicyOf without BufferBefore and BufferAfter), it offered windows that Reserve
// refused and that the brute force does not find, and pools' wrong first units; with lapsed
// holds counted as live (Booked without notLapsed, and Search without its Expired filter), it
// left out resources that the brute force finds free and Reserve booked; with places ignored
// (one place enough), it offered resources of too few places.
func TestSearchAgainstBruteForce(t *testing.T) {
	t.Parallel()
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			t.Parallel()
			searchAgainstBruteForce(t, seed)
		})
	}
}

func searchAgainstBruteForce(t *testing.T, seed uint64) {
	ctx := context.Background()
	rnd := rand.New(rand.NewPCG(seed, 25))
	db, _ := repotest.NewDB(t)
	clk := &clock{now: time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)}
	s := repo.New(db, repo.Options{Now: clk.Now, StrictCatalogue: seed%2 == 0})
	t0 := clk.Now()
	at := func(slots int) time.Time { return t0.Add(time.Duration(slots) * searchGrid) }
	pick := func(ds ...time.Duration) time.Duration { return ds[rnd.IntN(len(ds))] }

	// The catalogue, first without rules nor buffers, so that random bookings go in.
	const n = 24
	res := map[string]*reservation.Resource{}
	var ids []string
	for i := range n {
		r := &reservation.Resource{ID: fmt.Sprintf("r%02d", i), Capacity: 1 + rnd.IntN(3)*rnd.IntN(2), Labels: map[string]string{
			"view": []string{"sea", "garden", "city"}[rnd.IntN(3)], "beds": fmt.Sprint(1 + rnd.IntN(3))}}
		if rnd.IntN(2) == 0 {
			r.Labels["balcony"] = "yes"
		}
		if rnd.IntN(3) > 0 {
			r.PoolID = fmt.Sprintf("p%d", rnd.IntN(3))
		}
		if _, err := s.PutResource(ctx, r, 0); err != nil {
			t.Fatal(err)
		}
		res[r.ID] = r
		ids = append(ids, r.ID)
	}
	// Bookings over the next 4 days: some confirmed, some holds of which some lapse.
	for range 120 {
		id := ids[rnd.IntN(n)]
		from := rnd.IntN(4 * 96)
		b := reservation.Booking{Reservations: []*reservation.Reservation{{UserID: "u", ResourceID: id, Status: reservation.StatusConfirmed,
			Start: at(from), End: at(from + 1 + rnd.IntN(24))}}}
		if rnd.IntN(3) == 0 {
			b.Reservations[0].Status = reservation.StatusPending
			b.Hold = time.Duration(1+rnd.IntN(8)) * searchGrid
		}
		if _, err := s.Reserve(ctx, b); err != nil && reservation.ErrorCode(err) != reservation.ECONFLICT {
			t.Fatal(err)
		}
	}
	// Then the rules, buffers and disabled units (buffers that the bookings do not fit are left out).
	for _, id := range ids {
		r := res[id]
		r.Rules = reservation.Rules{
			BufferBefore: pick(0, 0, searchGrid), BufferAfter: pick(0, searchGrid, 2*searchGrid),
			MinDuration: pick(0, 0, time.Hour), MaxDuration: pick(0, 0, 12*time.Hour, 2*24*time.Hour),
			MinNotice: pick(0, 0, 2*time.Hour, 24*time.Hour), MaxAdvance: pick(0, 0, 2*24*time.Hour),
		}
		r.Disabled = rnd.IntN(8) == 0
		put, err := s.PutResource(ctx, r, 0)
		if err != nil {
			r.BufferBefore, r.BufferAfter = 0, 0
			if put, err = s.PutResource(ctx, r, 0); err != nil {
				t.Fatal(err)
			}
		}
		res[id] = put
	}
	clk.Set(at(4)) // an hour on: the holds of up to 4 slots have lapsed
	now := clk.Now()
	brute := func(id string) bruteResource {
		booked, err := s.Find(ctx, reservation.Filter{ResourceID: id})
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range booked {
			if b.Expired(now) {
				t.Fatalf("Find answered a lapsed hold %+v", *b)
			}
		}
		return bruteResource{res[id], booked}
	}
	// book books places of [start, end) on id (or of the pool), which must succeed, and
	// cancels them; it returns the unit booked.
	book := func(id, pool string, start, end time.Time, places int) (string, error) {
		var rs []*reservation.Reservation
		for range places {
			rs = append(rs, &reservation.Reservation{UserID: "checker", ResourceID: id, PoolID: pool, Start: start, End: end})
		}
		made, err := s.Reserve(ctx, reservation.Book(rs...))
		if err != nil {
			return "", err
		}
		for _, r := range made {
			if _, err := s.Cancel(ctx, reservation.Ref{ID: r.ID}); err != nil {
				t.Fatal(err)
			}
		}
		return made[0].ResourceID, nil
	}
	search := func(q reservation.SearchQuery) []reservation.Offer {
		q.PageSize = 1 + rnd.IntN(4)
		var all []reservation.Offer
		for {
			page, err := s.SearchAvailability(ctx, q)
			if err != nil {
				t.Fatalf("search %+v: %v", q, err)
			}
			all = append(all, page.Offers...)
			if page.Next == "" {
				return all
			}
			q.After = page.Next
		}
	}

	checked, offered := 0, 0
	for k := range 24 {
		terms := []searchTerm{searchTerms[rnd.IntN(len(searchTerms))]}
		if rnd.IntN(2) == 0 {
			terms = append(terms, searchTerms[rnd.IntN(len(searchTerms))])
		}
		var texts []string
		for _, tm := range terms {
			texts = append(texts, tm.text)
		}
		matched := func(id string) bool {
			for _, tm := range terms {
				if !tm.match(res[id].Labels) {
					return false
				}
			}
			return true
		}
		places := 1 + rnd.IntN(2)
		q := reservation.SearchQuery{Selector: strings.Join(texts, ", "), Places: places}
		switch k % 3 {
		case 0, 1: // a window
			from := rnd.IntN(3 * 96)
			q.Start, q.End = at(from), at(from+1+rnd.IntN(16))
			got := map[string]reservation.Offer{}
			for _, o := range search(q) {
				got[o.ResourceID] = o
			}
			for _, id := range ids {
				o, ok := got[id]
				want := matched(id) && bruteFits(brute(id), q.Start, q.End, places, now)
				checked++
				if ok != want {
					t.Errorf("%s: %s offered %v, the brute force says %v", q.Selector, id, ok, want)
				}
				if ok {
					offered++
					if o.Available < places || !o.Start.Equal(q.Start) || !o.End.Equal(q.End) || o.PoolID != res[id].PoolID {
						t.Errorf("%s: offer %+v", q.Selector, o)
					}
					if _, err := book(id, "", q.Start, q.End, places); err != nil {
						t.Errorf("%s: %s offered %s-%s, Reserve refused it: %v", q.Selector, id, q.Start, q.End, err)
					}
				} else if matched(id) {
					if _, err := book(id, "", q.Start, q.End, places); err == nil {
						t.Errorf("%s: %s left out, but Reserve booked %s-%s", q.Selector, id, q.Start, q.End)
					}
				}
			}
		case 2: // a length within a range, on a grid or on none
			q.Duration = time.Duration(1+rnd.IntN(8)) * searchGrid
			from := rnd.IntN(2 * 96)
			q.Start, q.End = at(from), at(from+8+rnd.IntN(2*96))
			grid := searchGrid
			if rnd.IntN(2) == 0 {
				q.Step = 2 * searchGrid
				grid = q.Step
			}
			got := map[string]reservation.Offer{}
			for _, o := range search(q) {
				got[o.ResourceID] = o
			}
			for _, id := range ids {
				o, ok := got[id]
				var want time.Time
				if matched(id) {
					b := brute(id)
					for st := q.Start; !st.Add(q.Duration).After(q.End); st = st.Add(grid) {
						if bruteFits(b, st, st.Add(q.Duration), places, now) {
							want = st
							break
						}
					}
				}
				checked++
				switch {
				case ok != !want.IsZero():
					t.Errorf("%s, %s in %s-%s by %s: %s offered %v, the brute force found %v", q.Selector, q.Duration, q.Start, q.End, q.Step, id, o, want)
				case ok && (!o.Start.Equal(want) || !o.End.Equal(want.Add(q.Duration))):
					t.Errorf("%s, %s in %s-%s by %s: %s offered %s, the brute force's earliest is %s", q.Selector, q.Duration, q.Start, q.End, q.Step, id, o.Start, want)
				case ok:
					offered++
					if _, err := book(id, "", o.Start, o.End, places); err != nil {
						t.Errorf("%s: %s offered %s-%s, Reserve refused it: %v", q.Selector, id, o.Start, o.End, err)
					}
				}
			}
		}
		// A pool, for the same window or the range's first window.
		pool := fmt.Sprintf("p%d", rnd.IntN(3))
		start, end := q.Start, q.End
		if q.Duration > 0 {
			end = start.Add(q.Duration)
		}
		pq := reservation.SearchQuery{PoolID: pool, Start: start, End: end}
		offers := search(pq)
		want := ""
		for _, id := range ids {
			if res[id].PoolID == pool && bruteFits(brute(id), start, end, 1, now) {
				want = id
				break
			}
		}
		switch {
		case len(offers) > 1:
			t.Errorf("pool %s: %d offers, want the first unit only", pool, len(offers))
		case want == "" && len(offers) > 0:
			t.Errorf("pool %s %s-%s: offered %+v, the brute force finds no unit free", pool, start, end, offers[0])
		case want != "" && (len(offers) == 0 || offers[0].ResourceID != want):
			t.Errorf("pool %s %s-%s: offered %+v, the brute force's first unit free is %s", pool, start, end, offers, want)
		case want != "":
			offered++
			unit, err := book("", pool, start, end, 1)
			if err != nil || unit != want {
				t.Errorf("pool %s %s-%s: offered %s, Reserve of the pool booked %q (%v)", pool, start, end, want, unit, err)
			}
		}
	}
	if offered < checked/10 {
		t.Errorf("%d offers in %d checks: the searches test too little", offered, checked)
	}
	t.Logf("seed %d: %d resources checked, %d offers booked for real", seed, checked, offered)
}

// TestSearchReadsAreBounded: a search reads the catalogue in batches growing from twice the
// page to 500 entries, and the reservations of each batch's candidates in one read (two
// statements), and stops at a full page; a
// window that meets more than MaxSearchRows reservations is INVALID_ARGUMENT on end.
func TestSearchReadsAreBounded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := repotest.NewDB(t)
	s := repo.New(db, repo.Options{})
	// 1,200 resources, a third with view=sea, straight into the catalogue's table.
	var values []string
	var args []any
	for i := range 1200 {
		view := "city"
		if i%3 == 0 {
			view = "sea"
		}
		values = append(values, "(?, 0, 0, ?, ?)")
		args = append(args, fmt.Sprintf("room-%04d", i), base, fmt.Sprintf(`{"view":%q}`, view))
	}
	if _, err := db.ExecContext(ctx, "INSERT INTO resources (id, version, max_span_us, created_at, labels) VALUES "+strings.Join(values, ", "), args...); err != nil {
		t.Fatal(err)
	}
	src := &countingSource{s: s}
	q := reservation.SearchQuery{Selector: "view=sea", Start: base, End: base.Add(24 * time.Hour), PageSize: 500}
	var all []reservation.Offer
	pages := 0
	for {
		page, err := reservation.Search(ctx, src, q, base.Add(-time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		pages++
		all = append(all, page.Offers...)
		if page.Next == "" {
			break
		}
		q.After = page.Next
	}
	// 400 matches, a page of 500: one page, reading the whole catalogue in 3 batches of at
	// most 500, and the reservations in 3 reads (one per batch).
	if len(all) != 400 || pages != 1 || src.catalogue != 3 || src.booked != 3 || src.rows != 0 {
		t.Errorf("%d offers in %d pages, %d catalogue reads, %d reservation reads, %d rows; want 400, 1, 3, 3, 0", len(all), pages, src.catalogue, src.booked, src.rows)
	}
	// A page of 50 reads 100 entries (34 matches), then 200, and stops at the 50th match:
	// two reads of each, 300 entries.
	*src = countingSource{s: s}
	q.PageSize, q.After = 50, ""
	page, err := reservation.Search(ctx, src, q, base.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Offers) != 50 || page.Next != "room-0147" || src.catalogue != 2 || src.booked != 2 || page.Examined != 300 {
		t.Errorf("%d offers, next %q, %d catalogue reads, %d reservation reads, %d examined; want 50, room-0147, 2, 2, 300", len(page.Offers), page.Next, src.catalogue, src.booked, page.Examined)
	}

	// More than MaxSearchRows reservations on the candidates: refused, having read at most one more.
	var rows []string
	args = args[:0]
	for i := range reservation.MaxSearchRows + 1 {
		start := base.Add(time.Duration(i) * time.Minute)
		rows = append(rows, "(?, 'u', 'room-0000', 2, ?, ?, '', ?, ?, 1, NULL, '', '')")
		args = append(args, fmt.Sprintf("00000000-0000-7000-8000-%012d", i), start, start.Add(time.Minute), base, base)
		if len(rows) == 5000 || i == reservation.MaxSearchRows {
			if _, err := db.ExecContext(ctx, "INSERT INTO reservations (id, user_id, resource_id, status, start_at, end_at, note, created_at, updated_at, version, expires_at, pool_id, series_id) VALUES "+strings.Join(rows, ", "), args...); err != nil {
				t.Fatal(err)
			}
			rows, args = rows[:0], args[:0]
		}
	}
	if _, err := db.ExecContext(ctx, "UPDATE resources SET max_span_us = 60000000 WHERE id = 'room-0000'"); err != nil {
		t.Fatal(err)
	}
	*src = countingSource{s: s}
	q = reservation.SearchQuery{Selector: "view=sea", Start: base, End: base.Add(40 * 24 * time.Hour)}
	_, err = reservation.Search(ctx, src, q, base.Add(-time.Hour))
	if e := fieldErr(err); e == nil || e.Field != "end" || src.rows != reservation.MaxSearchRows+1 {
		t.Errorf("search over %d reservations: %v after %d rows; want INVALID_ARGUMENT on end after %d", reservation.MaxSearchRows+1, err, src.rows, reservation.MaxSearchRows+1)
	}
}

// fieldErr is the first field violation of an EINVALID error; nil for any other.
func fieldErr(err error) *reservation.FieldViolation {
	var e *reservation.Error
	if reservation.ErrorCode(err) != reservation.EINVALID || !errors.As(err, &e) || len(e.Fields) == 0 {
		return nil
	}
	return &e.Fields[0]
}

// countingSource counts the reads a search makes through the store: one statement each.
type countingSource struct {
	s                       *repo.Store
	catalogue, booked, rows int
}

func (c *countingSource) SearchResources(ctx context.Context, pool, after string, limit int) ([]*reservation.Resource, error) {
	c.catalogue++
	return c.s.SearchResources(ctx, pool, after, limit)
}

func (c *countingSource) Booked(ctx context.Context, spans []reservation.Span, now time.Time, limit int) ([]*reservation.Reservation, error) {
	c.booked++
	rs, err := c.s.Booked(ctx, spans, now, limit)
	c.rows += len(rs)
	return rs, err
}
