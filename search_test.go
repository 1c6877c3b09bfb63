package reservation_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"reservation"
)

// TestSelectorMatches: each form of the grammar, on labels with and without the key.
func TestSelectorMatches(t *testing.T) {
	sea2 := map[string]string{"view": "sea", "beds": "2", "balcony": ""}
	city1 := map[string]string{"view": "city", "beds": "1"}
	none := map[string]string{}
	for _, c := range []struct {
		sel  string
		want [3]bool // sea2, city1, none
	}{
		{"view=sea", [3]bool{true, false, false}},
		{"view == sea", [3]bool{true, false, false}},
		{"view!=sea", [3]bool{false, true, true}},
		{"view in (sea, garden)", [3]bool{true, false, false}},
		{"view notin (sea,garden)", [3]bool{false, true, true}},
		{"balcony", [3]bool{true, false, false}},
		{"!balcony", [3]bool{false, true, true}},
		{"beds>=2", [3]bool{true, false, false}},
		{"beds>1", [3]bool{true, false, false}},
		{"beds<2", [3]bool{false, true, false}},
		{"beds<=2, view=city", [3]bool{false, true, false}},
		{"view=sea,beds>=2,balcony", [3]bool{true, false, false}},
		{"balcony=", [3]bool{true, false, false}},
		{"view=sea, view=city", [3]bool{false, false, false}},
		{"in", [3]bool{false, false, false}}, // a key named "in"
	} {
		sel, err := reservation.ParseSelector(c.sel)
		if err != nil {
			t.Errorf("%q: %v", c.sel, err)
			continue
		}
		for i, l := range []map[string]string{sea2, city1, none} {
			if got := sel.Matches(l); got != c.want[i] {
				t.Errorf("%q on %v: %v, want %v", c.sel, l, got, c.want[i])
			}
		}
	}
}

// TestSelectorErrors: a selector that does not parse names the byte where it goes wrong, and
// the bounds hold.
func TestSelectorErrors(t *testing.T) {
	for _, c := range []struct {
		sel  string
		pos  int
		says string
	}{
		{"", 1, "is empty"},
		{"  ", 1, "is empty"},
		{"view=sea,", 10, "expected a label key"},
		{"view=sea beds", 10, "expected a comma"},
		{"view in sea", 9, "expected ("},
		{"view in (sea", 13, "expected , or )"},
		{"view in ()", 10, "expected a value"},
		{"beds>=two", 7, "expected an integer"},
		{"beds>", 6, "expected an integer"},
		{"view sea", 6, "expected an operator"},
		{"=sea", 1, "expected a label key"},
		{"!", 2, "after !"},
		{"view=(sea)", 6, "expected a value"},
		{"a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r,s,t,u,v,w,x,y,z,A,B,C,D,E,F,G", 65, "at most 32 terms"},
		{"k in (" + strings.Repeat("v,", 32) + "v)", 71, "at most 32 values"},
		{strings.Repeat("k", reservation.MaxLabelLen+1), 1, "at most 256 bytes"},
		{strings.Repeat("k=v,", 300), reservation.MaxSelectorLen + 1, "at most 1024 bytes"},
		{"view=\xff", 6, "UTF-8"},
	} {
		_, err := reservation.ParseSelector(c.sel)
		var e *reservation.SelectorError
		if !errors.As(err, &e) || e.Pos != c.pos || !strings.Contains(e.Msg, c.says) {
			t.Errorf("%q: %v; want at byte %d: …%s…", c.sel, err, c.pos, c.says)
		}
	}
}

// TestSearchValidate: each wrong field is named as the wire names it.
func TestSearchValidate(t *testing.T) {
	t0 := time.Date(2030, 3, 1, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	for _, c := range []struct {
		q     reservation.SearchQuery
		field string
	}{
		{reservation.SearchQuery{Selector: "a", End: t0}, "start"},
		{reservation.SearchQuery{Selector: "a", Start: t0, End: t0}, "end"},
		{reservation.SearchQuery{Selector: "a", Start: t0, End: t0.Add(367 * day)}, "end"},
		{reservation.SearchQuery{Selector: "a", Start: t0, End: t0.Add(367 * day), Duration: day}, "range_end"},
		{reservation.SearchQuery{Selector: "a", Start: t0, End: t0.Add(day), Duration: 2 * day}, "duration"},
		{reservation.SearchQuery{Selector: "a", Start: t0, End: t0.Add(day), Step: time.Hour}, "step"},
		{reservation.SearchQuery{Selector: "a", Start: t0, End: t0.Add(day), Duration: time.Hour, Step: time.Second}, "step"},
		{reservation.SearchQuery{Start: t0, End: t0.Add(day)}, "selector"},
		{reservation.SearchQuery{Selector: "a b", Start: t0, End: t0.Add(day)}, "selector"},
		{reservation.SearchQuery{Selector: "a", PoolID: "p", Start: t0, End: t0.Add(day)}, "selector"},
		{reservation.SearchQuery{Selector: "a", Start: t0, End: t0.Add(day), Places: -1}, "places"},
		{reservation.SearchQuery{Selector: "a", Start: t0, End: t0.Add(day), PageSize: -1}, "page_size"},
	} {
		err := c.q.Validate()
		var e *reservation.Error
		if !errors.As(err, &e) || len(e.Fields) == 0 || e.Fields[0].Field != c.field {
			t.Errorf("%+v: %v; want %s named first", c.q, err, c.field)
		}
	}
}

// fakeSource is a catalogue of n free resources, for the bounds of a search (pure logic: the
// database's side is in repo's TestSearchReadsAreBounded).
type fakeSource struct {
	n, reads int
	capacity int                        // of every resource; 0 means 1
	busy     []*reservation.Reservation // on every resource
}

func (f *fakeSource) SearchResources(_ context.Context, _, after string, limit int) ([]*reservation.Resource, error) {
	f.reads++
	var out []*reservation.Resource
	for i := range f.n {
		if id := fmt.Sprintf("r%06d", i); id > after && len(out) < limit {
			out = append(out, &reservation.Resource{ID: id, Capacity: f.capacity, Labels: map[string]string{"even": fmt.Sprint(i%2 == 0)}})
		}
	}
	return out, nil
}

func (f *fakeSource) Booked(_ context.Context, spans []reservation.Span, _ time.Time, _ int) ([]*reservation.Reservation, error) {
	var out []*reservation.Reservation
	for _, sp := range spans {
		for _, b := range f.busy {
			c := *b
			c.ResourceID = sp.ResourceID
			out = append(out, &c)
		}
	}
	return out, nil
}

// TestSearchWeighingIsBounded: a range over a resource of capacity 2 crowded with 3,000
// overlapping reservations would weigh each of thousands of starts beside all of them: past
// MaxSearchWork it is INVALID_ARGUMENT on range_end, not a call that runs for minutes. (With
// places larger than the capacity it is no offer, at once.)
func TestSearchWeighingIsBounded(t *testing.T) {
	t0 := time.Date(2030, 3, 1, 0, 0, 0, 0, time.UTC)
	src := &fakeSource{n: 1, capacity: 2}
	for i := range 3000 {
		at := t0.Add(time.Duration(i) * time.Minute)
		src.busy = append(src.busy, &reservation.Reservation{ID: fmt.Sprint(i), Start: at, End: at.Add(100 * 24 * time.Hour)})
	}
	q := reservation.SearchQuery{Selector: "even", Start: t0, End: t0.Add(366 * 24 * time.Hour), Duration: 200 * 24 * time.Hour}
	_, err := reservation.Search(context.Background(), src, q, t0)
	var e *reservation.Error
	if !errors.As(err, &e) || e.Code != reservation.EINVALID || e.Fields[0].Field != "range_end" {
		t.Fatalf("a crowded range: %v; want INVALID on range_end", err)
	}
	q = reservation.SearchQuery{Selector: "even", Start: t0, End: t0.Add(time.Hour), Places: reservation.MaxCapacity}
	src.busy = nil
	page, err := reservation.Search(context.Background(), src, q, t0)
	if err != nil || len(page.Offers) != 0 {
		t.Errorf("a million places on a resource of 2: %v, %v; want no offer", page, err)
	}
}

// TestSearchExaminesABoundedCatalogue: a selector that matches nothing in a catalogue larger
// than MaxSearchExamined reads MaxSearchExamined entries and answers an empty page that goes
// on; the pages together cover the catalogue once.
func TestSearchExaminesABoundedCatalogue(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2030, 3, 1, 0, 0, 0, 0, time.UTC)
	src := &fakeSource{n: 12_000}
	q := reservation.SearchQuery{Selector: "even=maybe", Start: t0, End: t0.Add(time.Hour)}
	var examined, pages int
	for {
		page, err := reservation.Search(ctx, src, q, t0)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		examined += page.Examined
		if len(page.Offers) != 0 || page.Examined > reservation.MaxSearchExamined {
			t.Fatalf("page %d: %d offers after %d examined", pages, len(page.Offers), page.Examined)
		}
		if page.Next == "" {
			break
		}
		q.After = page.Next
	}
	if examined != 12_000 || pages != 3 {
		t.Errorf("%d examined in %d pages; want 12000 in 3", examined, pages)
	}
	// Matching every other one, pages of 500 read 1,000 entries each.
	q = reservation.SearchQuery{Selector: "even=true", Start: t0, End: t0.Add(time.Hour), PageSize: 10_000}
	page, err := reservation.Search(ctx, src, q, t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Offers) != reservation.MaxSearchPageSize || page.Examined != 1000 || page.Next != "r000998" {
		t.Errorf("%d offers, %d examined, next %q; want %d, 1000, r000998", len(page.Offers), page.Examined, page.Next, reservation.MaxSearchPageSize)
	}
}
