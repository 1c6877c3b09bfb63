package main

import (
	"context"
	"flag"
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "reservation/proto/reservation/v1"
	"reservation/repo/repotest"
)

var screenshotInventory = flag.String("screenshot-inventory", "", "where TestTimelinePageInventory saves its screenshot at 1400 px (default: a temporary file)")

// TestTimelinePageInventory drives the timeline over a catalogue against a real reservationd:
// rows come from the catalogue grouped by pool (a room never booked among them), a resource
// with capacity shows its places and the most taken at once, a disabled one is shown as such,
// a drag on a pool's header books whichever unit is free and names it, a full pool is explained
// in the dialog, the resources= list groups too, and a resource put while the page is open
// appears without a reload.
func TestTimelinePageInventory(t *testing.T) {
	_, dsn := repotest.NewDB(t)
	d := startDaemon(t, "RESERVATION_MYSQL_DSN="+dsn, "RESERVATION_LOCK=local")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d.waitServing(t, ctx, d.dial(t))
	c := pb.NewReservationServiceClient(d.dial(t))
	week := time.Date(2030, 3, 4, 0, 0, 0, 0, time.UTC) // a Monday
	const day = 24 * time.Hour
	put := func(r *pb.Resource) {
		t.Helper()
		if _, err := c.PutResource(ctx, &pb.PutResourceRequest{Resource: r}); err != nil {
			t.Fatalf("put %s: %v", r.Id, err)
		}
	}
	book := func(user, resource string, from, to time.Duration) *pb.Reservation {
		t.Helper()
		resp, err := c.Reserve(ctx, &pb.ReserveRequest{Reservation: &pb.Reservation{UserId: user, ResourceId: resource,
			Start: timestamppb.New(week.Add(from)), End: timestamppb.New(week.Add(to))}})
		if err != nil {
			t.Fatalf("book %s for %s: %v", resource, user, err)
		}
		return resp.Reservation
	}
	for _, id := range []string{"deluxe-101", "deluxe-102", "deluxe-103"} {
		put(&pb.Resource{Id: id, PoolId: "deluxe"})
	}
	put(&pb.Resource{Id: "hall", Capacity: 3, DisplayName: "Main hall"})
	put(&pb.Resource{Id: "attic"})
	book("alice", "deluxe-101", 9*time.Hour, 12*time.Hour)
	book("bob", "deluxe-102", 10*time.Hour, 11*time.Hour)
	// Three bookings of the hall, at most two at once: the page must say 2, not 3.
	book("gina", "hall", day+9*time.Hour, day+12*time.Hour)
	book("hal", "hall", day+10*time.Hour, day+13*time.Hour)
	book("ivy", "hall", 2*day+9*time.Hour, 2*day+12*time.Hour)
	book("facilities", "attic", 3*day+9*time.Hour, 3*day+10*time.Hour)
	put(&pb.Resource{Id: "attic", Disabled: true}) // its booking stays
	book("carol", "room-1", 4*day+9*time.Hour, 4*day+10*time.Hour)

	page := browser(t)
	if err := chromedp.Do(page, chromedp.Navigate("http://"+d.http+"/?view=week&start=2030-03-04")); err != nil {
		t.Fatal(err)
	}
	rows := `[...document.querySelectorAll('.row')].map((r) => r.classList.contains('pool-row') ? 'pool ' + r.dataset.pool : r.dataset.resource).join(',')`
	within(t, page, pageWait, "rows from the catalogue: those in no pool, then the pool's header and its units, the unbooked one too",
		rows+` === 'attic,hall,room-1,pool deluxe,deluxe-101,deluxe-102,deluxe-103' && document.querySelectorAll('.bar').length === 7
			&& document.getElementById('conn').textContent === 'live'`)
	within(t, page, pageWait, "the pool's header names it and its units; the units are marked as its", `(() => {
		const h = document.querySelector('.pool-row[data-pool="deluxe"]');
		return h.querySelector('.name').textContent === 'deluxe' && h.querySelector('.meta').textContent === '3 units'
			&& !h.querySelector('.bar') && document.querySelectorAll('.row.unit[data-pool="deluxe"]').length === 3
			&& document.querySelectorAll('.row[data-resource="deluxe-103"] .bar').length === 0; })()`)
	within(t, page, pageWait, "the hall shows its display name, its places, and 2 of 3 taken at most (three bookings, two at once)", `(() => {
		const l = document.querySelector('.row[data-resource="hall"] .label');
		return l.querySelector('.name').textContent === 'Main hall' && [...l.querySelectorAll('.meta')].map((m) => m.textContent).join('|') === 'hall|3 places|2/3 taken at peak'; })()`)
	within(t, page, pageWait, "the hall's overlapping bookings lie in two lanes, the row grown to hold them", `(() => {
		const bars = [...document.querySelectorAll('.row[data-resource="hall"] .bar')], lane = (who) => bars.find((b) => b.dataset.who === who).dataset.lane;
		const tall = document.querySelector('.row[data-resource="hall"] .track').offsetHeight, one = document.querySelector('.row[data-resource="room-1"] .track').offsetHeight;
		return bars.length === 3 && lane('gina') === '0' && lane('hal') === '1' && lane('ivy') === '0' && tall > one * 1.5; })()`)
	within(t, page, pageWait, "the attic is shown disabled, its booking kept, its + button off", `(() => {
		const r = document.querySelector('.row[data-resource="attic"]');
		return r.classList.contains('disabled') && r.querySelector('.meta.off').textContent === 'disabled' && r.querySelector('.label button').disabled
			&& r.querySelectorAll('.bar').length === 1; })()`)
	if _, err := chromedp.Run(page, chromedp.Evaluate[bool](pageChecks)); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		for _, name := range []string{"pageScroll", "header", "zone", "names", "ticks", "bars"} {
			arg := ""
			if name == "bars" {
				arg = "[]"
			}
			problem, err := chromedp.Run(page, chromedp.Evaluate[string](fmt.Sprintf("checks.%s(%s)", name, arg)))
			if err != nil {
				t.Fatal(err)
			}
			if problem != "" {
				t.Errorf("%s, %s: %s", when, name, problem)
			}
		}
	}
	check("the catalogue's rows")

	// A drag on the disabled attic opens no dialog, and says why.
	drag(t, page, "attic", week.Add(2*day+9*time.Hour), week.Add(2*day+11*time.Hour), week)
	within(t, page, pageWait, "a drag on a disabled resource is refused in words", `!document.getElementById('new').open
		&& document.getElementById('message').textContent.includes('attic is disabled')`)

	// A drag on the pool's header, Monday 10:00-11:00: deluxe-101 and -102 are taken then, so the
	// service assigns deluxe-103, and the page names it.
	header := `.pool-row[data-pool="deluxe"] .track`
	dragOn(t, page, header, week.Add(10*time.Hour), week.Add(11*time.Hour), week)
	within(t, page, pageWait, "the new-reservation dialog, for any free unit of the pool", `document.getElementById('new').open
		&& document.getElementById('new-what').textContent.includes('Any free unit of deluxe (3 units)')`)
	fill(t, page, "new-user", "kim", "new-note", "late arrival")
	if err := chromedp.Do(page, chromedp.Click(chromedp.ID("new-submit"))); err != nil {
		t.Fatal(err)
	}
	within(t, page, pageWait, "the page names the unit assigned, and draws the booking on its row", `!document.getElementById('new').open
		&& document.getElementById('message').textContent.startsWith('deluxe-103 was assigned from deluxe')
		&& [...document.querySelectorAll('.row[data-resource="deluxe-103"] .bar')].some((b) => b.dataset.who === 'kim' && b.classList.contains('assigned'))`)
	msg, _ := chromedp.Run(page, chromedp.Text(chromedp.ID("message")))
	t.Logf("after the drag on the pool's header: %s", msg)
	got, err := c.Filter(ctx, &pb.FilterRequest{UserId: "kim"})
	if err != nil || len(got.Reservations) != 1 {
		t.Fatalf("the pool booking through gRPC: %v, %v", got, err)
	}
	if r := got.Reservations[0]; r.ResourceId != "deluxe-103" || r.PoolId != "deluxe" || r.Start.AsTime() != week.Add(10*time.Hour) || r.End.AsTime() != week.Add(11*time.Hour) {
		t.Errorf("the pool booking is %s (pool %q) from %s to %s; want deluxe-103 of deluxe, Monday 10:00-11:00", r.ResourceId, r.PoolId, r.Start.AsTime(), r.End.AsTime())
	}
	within(t, page, pageWait, "the header marks the hour in which every unit is taken", `(() => {
		const f = [...document.querySelectorAll('.pool-row[data-pool="deluxe"] .full')];
		return f.length === 1 && f[0].title.startsWith('deluxe is full from'); })()`)

	// The same hour again: the pool is full, and the dialog says so beside the times.
	dragOn(t, page, header, week.Add(10*time.Hour), week.Add(11*time.Hour), week)
	within(t, page, pageWait, "the dialog opens again", `document.getElementById('new').open`)
	fill(t, page, "new-user", "lee")
	if err := chromedp.Do(page, chromedp.Click(chromedp.ID("new-submit"))); err != nil {
		t.Fatal(err)
	}
	within(t, page, pageWait, "POOL_FULL explained beside the times, the dialog open with what was typed", `(() => {
		const m = document.getElementById('new-when-error');
		return document.getElementById('new').open && !m.hidden && m.textContent.startsWith('No unit of deluxe is free')
			&& document.getElementById('new-user').value === 'lee' && document.getElementById('new-start').getAttribute('aria-invalid') === 'true'; })()`)
	full, _ := chromedp.Run(page, chromedp.Text(chromedp.ID("new-when-error")))
	t.Logf("a full pool: %s", full)
	if _, err := chromedp.Run(page, chromedp.Evaluate[bool](`(() => { document.querySelector('#new button[value="cancel"]').click(); return true; })()`)); err != nil {
		t.Fatal(err)
	}
	within(t, page, pageWait, "Close closes it", `!document.getElementById('new').open`)
	check("after the pool booking")

	if _, err := chromedp.Run(page, chromedp.Evaluate[bool](`document.getElementById('message').hidden = true`)); err != nil {
		t.Fatal(err)
	}
	saveScreenshot(t, page, *screenshotInventory, "timeline-inventory.png", "of the catalogue's week at 1400 px")

	// The page learns resources while open: a unit put into the pool (never booked, so only the
	// catalogue knows it), then a booking of a resource the page has not heard of, which has it
	// list the catalogue again (so the test need not wait for the 30 s timer).
	put(&pb.Resource{Id: "deluxe-104", PoolId: "deluxe"})
	book("mo", "annex", 5*day+9*time.Hour, 5*day+11*time.Hour)
	took := within(t, page, pageWait, "the new unit and the new resource appear without a reload",
		rows+` === 'annex,attic,hall,room-1,pool deluxe,deluxe-101,deluxe-102,deluxe-103,deluxe-104'
			&& document.querySelector('.pool-row[data-pool="deluxe"] .meta').textContent === '4 units'`)
	t.Logf("a unit put while the page was open appeared after %s", took)

	// resources= still chooses the rows, and groups them: a pool's name stands for all its units,
	// a unit's brings its header, and a name the catalogue lacks is shown as before.
	for _, tc := range []struct{ list, want string }{
		{"hall,deluxe", "hall,pool deluxe,deluxe-101,deluxe-102,deluxe-103,deluxe-104"},
		{"deluxe-102,room-9,room-1", "pool deluxe,deluxe-102,room-9,room-1"},
	} {
		if _, err := chromedp.Run(page, chromedp.Evaluate[bool](fmt.Sprintf(`(() => { history.replaceState(null, '', '?view=week&start=2030-03-04&resources=%s'); readURL(); changed(); return true; })()`, tc.list))); err != nil {
			t.Fatal(err)
		}
		within(t, page, pageWait, "resources="+tc.list, fmt.Sprintf(`%s === %q`, rows, tc.want))
	}
}
