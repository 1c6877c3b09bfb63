package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	"github.com/jmoiron/sqlx"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "reservation/proto/reservation/v1"
	"reservation/repo/repotest"
)

// stored is a reservation's row as the database holds it.
type stored struct {
	Resource   string
	Start, End time.Time
	Version    int64
}

// storedRow reads reservation id's row (found false when there is none).
func storedRow(t *testing.T, ctx context.Context, db *sqlx.DB, id string) (row stored, found bool) {
	t.Helper()
	rows, err := db.QueryContext(ctx, "SELECT resource_id, start_at, end_at, version FROM reservations WHERE id = ?", id)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return row, false
	}
	if err := rows.Scan(&row.Resource, &row.Start, &row.End, &row.Version); err != nil {
		t.Fatal(err)
	}
	return row, true
}

// dragBar presses the mouse on the bar of reservation id at the instant at (which must lie in
// its booking), moves it to the instant to on the row of resource onto, and releases: a drag
// with the mouse, as a person does it, in the week view that starts at weekStart.
func dragBar(t *testing.T, page context.Context, id string, at, to time.Time, onto string, weekStart time.Time) {
	t.Helper()
	js := fmt.Sprintf(`(() => { const b = document.querySelector('.bar[data-id=%q]'), tr = b.parentElement.getBoundingClientRect(), br = b.getBoundingClientRect();
		const dest = document.querySelector('.row[data-resource=%q] .track').getBoundingClientRect();
		return {X: tr.x, W: tr.width, Y: br.y + br.height / 2, To: %q === b.closest('.row').dataset.resource ? br.y + br.height / 2 : dest.y + dest.height / 2}; })()`, id, onto, onto)
	box, err := chromedp.Run(page, chromedp.Evaluate[struct{ X, W, Y, To float64 }](js))
	if err != nil {
		t.Fatal(err)
	}
	x := func(at time.Time) float64 { return box.X + box.W*at.Sub(weekStart).Hours()/(7*24) }
	held := func(p *input.DispatchMouseEventParams) { p.Buttons = 1 }
	err = chromedp.Do(page,
		chromedp.MouseEvent(chromedp.MousePressed, x(at), box.Y, chromedp.ButtonLeft, held, chromedp.ClickCount(1)),
		chromedp.MouseEvent(chromedp.MouseMoved, (x(at)+x(to))/2, (box.Y+box.To)/2, chromedp.ButtonLeft, held),
		chromedp.MouseEvent(chromedp.MouseMoved, x(to), box.To, chromedp.ButtonLeft, held),
		chromedp.MouseEvent(chromedp.MouseReleased, x(to), box.To, chromedp.ButtonLeft, chromedp.ClickCount(1)),
	)
	if err != nil {
		t.Fatal(err)
	}
}

// screenshotOnFailure saves the page as name in a temporary directory when t fails, whatever
// step failed: what the page showed then is most of the story of a failed page test.
func screenshotOnFailure(t *testing.T, page context.Context, name string) {
	t.Cleanup(func() {
		if t.Failed() {
			saveScreenshot(t, page, "", name, "of the page when the test failed")
		}
	})
}

// barAt is a condition: the bar of reservation id lies on resource's row, drawn from start to
// end of the week view that starts at weekStart, no drag left over.
func barAt(id, resource string, start, end, weekStart time.Time) string {
	pct := func(at time.Time) float64 { return 100 * at.Sub(weekStart).Hours() / (7 * 24) }
	return fmt.Sprintf(`(() => { const b = document.querySelector('.row[data-resource=%q] .bar[data-id=%q]');
		return !!b && Math.abs(parseFloat(b.style.left) - %f) < 0.01 && Math.abs(parseFloat(b.style.width) - %f) < 0.01
			&& !b.classList.contains('dragged') && !document.querySelector('.ghost') && document.querySelectorAll('.bar[data-id=%q]').length === 1; })()`,
		resource, id, pct(start), pct(end)-pct(start), id)
}

// TestTimelinePageMovesAndCancels drives moves by drag in headless Chromium against a real
// reservationd: a press and release without movement still opens the details; a bar dragged
// along its row moves in quarter hours, onto its own old time too; dragged onto another row it
// moves to that resource; dragged onto a taken time it is refused in words naming what is in
// the way, the bar back in its place and the row unchanged; the details' Move does the same
// from the keyboard, a refusal beside its times. Each move is checked in the database. Then Cancel asks first: "Keep it" keeps the booking; confirmed with a reason, the
// booking is gone and its history ends with the cancel and that reason, after its moves.
func TestTimelinePageMovesAndCancels(t *testing.T) {
	db, dsn := repotest.NewDB(t)
	d := startDaemon(t, "RESERVATION_MYSQL_DSN="+dsn, "RESERVATION_LOCK=local")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d.waitServing(t, ctx, d.dial(t))
	c := pb.NewReservationServiceClient(d.dial(t))
	week := time.Date(2030, 3, 4, 0, 0, 0, 0, time.UTC) // a Monday
	const day = 24 * time.Hour
	book := func(user, resource string, from, to time.Duration) *pb.Reservation {
		t.Helper()
		resp, err := c.Reserve(ctx, &pb.ReserveRequest{Reservation: &pb.Reservation{UserId: user, ResourceId: resource,
			Start: timestamppb.New(week.Add(from)), End: timestamppb.New(week.Add(to))}})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Reservation
	}
	alice := book("alice", "room-1", 9*time.Hour, 11*time.Hour) // Monday 09:00-11:00
	bob := book("bob", "room-2", 13*time.Hour, 15*time.Hour)    // Monday 13:00-15:00

	page := browser(t)
	screenshotOnFailure(t, page, "timeline-moves.png")
	if err := chromedp.Do(page, chromedp.Navigate("http://"+d.http+"/?view=week&start=2030-03-04&resources=room-1,room-2")); err != nil {
		t.Fatal(err)
	}
	within(t, page, pageWait, "the bookings drawn, the feed live", `document.querySelectorAll('.bar').length === 2 && document.getElementById('conn').textContent === 'live'`)
	at := func(h time.Duration) time.Time { return week.Add(h) }
	want := func(step, resource string, start, end time.Duration, version int64) {
		t.Helper()
		got, ok := storedRow(t, ctx, db, alice.Id)
		if w := (stored{resource, at(start), at(end), version}); !ok || got.Resource != w.Resource || !got.Start.Equal(w.Start) || !got.End.Equal(w.End) || got.Version != w.Version {
			t.Fatalf("%s: the row is %+v (found %v); want %+v", step, got, ok, w)
		}
	}

	// A press and release without movement is a click: the details open, nothing moves.
	box, err := chromedp.Run(page, chromedp.Evaluate[struct{ X, Y float64 }](fmt.Sprintf(
		`(() => { const r = document.querySelector('.bar[data-id=%q]').getBoundingClientRect(); return {X: r.x + r.width / 2, Y: r.y + r.height / 2}; })()`, alice.Id)))
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(page, chromedp.MouseClickXY(box.X, box.Y)); err != nil {
		t.Fatal(err)
	}
	within(t, page, pageWait, "a click on a bar opens its details", fmt.Sprintf(`document.getElementById('details').open && document.getElementById('details-list').textContent.includes(%q)`, alice.Id))
	if _, err := chromedp.Run(page, chromedp.Evaluate[bool](`(() => { document.querySelector('#details button[value="close"]').click(); return true; })()`)); err != nil {
		t.Fatal(err)
	}
	within(t, page, pageWait, "Close closes it", `!document.getElementById('details').open`)
	want("after a click", "room-1", 9*time.Hour, 11*time.Hour, 1)

	// Along the row: grabbed at 10:00, dropped on Wednesday at 14:00, it moves by 2 days 4 hours.
	dragBar(t, page, alice.Id, at(10*time.Hour), at(2*day+14*time.Hour), "room-1", week)
	within(t, page, pageWait, "moved along its row, said so", barAt(alice.Id, "room-1", at(2*day+13*time.Hour), at(2*day+15*time.Hour), week)+
		` && document.getElementById('message').textContent.startsWith("Moved alice's booking")`)
	want("moved along its row", "room-1", 2*day+13*time.Hour, 2*day+15*time.Hour, 2)
	msg, _ := chromedp.Run(page, chromedp.Text(chromedp.ID("message")))
	t.Logf("after a drag along the row: %s", msg)

	// By one hour, onto half of its own old time (which never stands in its own way).
	dragBar(t, page, alice.Id, at(2*day+14*time.Hour), at(2*day+15*time.Hour), "room-1", week)
	within(t, page, pageWait, "moved by an hour over its own old time", barAt(alice.Id, "room-1", at(2*day+14*time.Hour), at(2*day+16*time.Hour), week))
	want("moved over its own old time", "room-1", 2*day+14*time.Hour, 2*day+16*time.Hour, 3)

	// Straight down onto room-2's row: the same time, the other resource.
	dragBar(t, page, alice.Id, at(2*day+15*time.Hour), at(2*day+15*time.Hour), "room-2", week)
	within(t, page, pageWait, "moved to room-2", barAt(alice.Id, "room-2", at(2*day+14*time.Hour), at(2*day+16*time.Hour), week)+
		` && !document.querySelector('.row[data-resource="room-1"] .bar')`)
	want("moved to another resource", "room-2", 2*day+14*time.Hour, 2*day+16*time.Hour, 4)

	// Onto bob's Monday afternoon: refused, explained as a refused booking is, the bar back.
	dragBar(t, page, alice.Id, at(2*day+15*time.Hour), at(14*time.Hour), "room-2", week)
	within(t, page, pageWait, "the conflict explained, naming bob's booking; the bar back in its place", barAt(alice.Id, "room-2", at(2*day+14*time.Hour), at(2*day+16*time.Hour), week)+
		` && (() => { const m = document.getElementById('message'); return !m.hidden && !m.classList.contains('info') && m.textContent.startsWith("alice's booking was not moved")
			&& m.textContent.includes('That time is already booked') && m.textContent.includes("bob's booking"); })()`)
	want("after a refused move", "room-2", 2*day+14*time.Hour, 2*day+16*time.Hour, 4)
	if got, ok := storedRow(t, ctx, db, bob.Id); !ok || got.Version != 1 || !got.Start.Equal(at(13*time.Hour)) {
		t.Fatalf("bob's booking after a refused move onto it: %+v (found %v)", got, ok)
	}
	msg, _ = chromedp.Run(page, chromedp.Text(chromedp.ID("message")))
	t.Logf("a refused move: %s", msg)

	// Without a drag: the details' Move, from the keyboard. Onto bob's time it is refused beside
	// the times, the dialog open with what was typed; then to Thursday on room-1, an hour and a half.
	if _, err := chromedp.Run(page, chromedp.Evaluate[bool](fmt.Sprintf(`(() => { document.querySelector('.bar[data-id=%q]').click(); return true; })()`, alice.Id))); err != nil {
		t.Fatal(err)
	}
	within(t, page, pageWait, "the details hold its window and resource", `document.getElementById('details').open && document.getElementById('details-start').value === '2030-03-06T14:00'
		&& document.getElementById('details-end').value === '2030-03-06T16:00' && document.getElementById('details-resource').value === 'room-2'`)
	fill(t, page, "details-start", "2030-03-04T13:30", "details-end", "2030-03-04T14:30")
	if err := chromedp.Do(page, chromedp.Focus(chromedp.ID("details-move")), chromedp.KeyEvent("\r")); err != nil {
		t.Fatal(err)
	}
	within(t, page, pageWait, "refused beside the times, the dialog open with what was typed", `(() => { const m = document.getElementById('details-when-error');
		return document.getElementById('details').open && !m.hidden && m.textContent.includes("bob's booking") && document.getElementById('details-start').value === '2030-03-04T13:30'
			&& document.getElementById('details-start').getAttribute('aria-invalid') === 'true'; })()`)
	want("after a refused move from the details", "room-2", 2*day+14*time.Hour, 2*day+16*time.Hour, 4)
	fill(t, page, "details-start", "2030-03-07T10:00", "details-end", "2030-03-07T11:30", "details-resource", "room-1")
	if err := chromedp.Do(page, chromedp.Focus(chromedp.ID("details-move")), chromedp.KeyEvent("\r")); err != nil {
		t.Fatal(err)
	}
	within(t, page, pageWait, "moved from the details", `!document.getElementById('details').open && `+barAt(alice.Id, "room-1", at(3*day+10*time.Hour), at(3*day+11*time.Hour+30*time.Minute), week))
	want("moved from the details", "room-1", 3*day+10*time.Hour, 3*day+11*time.Hour+30*time.Minute, 5)

	// Cancel asks first; "Keep it" keeps the booking.
	askCancel := func() {
		t.Helper()
		// Clicks from script: the live feed may redraw the bar between a mouse's press and release.
		if _, err := chromedp.Run(page, chromedp.Evaluate[bool](fmt.Sprintf(`(() => { document.querySelector('.bar[data-id=%q]').click(); return true; })()`, alice.Id))); err != nil {
			t.Fatal(err)
		}
		within(t, page, pageWait, "the details open", `document.getElementById('details').open`)
		if _, err := chromedp.Run(page, chromedp.Evaluate[bool](`(() => { document.getElementById('details-cancel').click(); return true; })()`)); err != nil {
			t.Fatal(err)
		}
		within(t, page, pageWait, "Cancel asks first, with a reason field, no series choice", `document.getElementById('cancel').open && document.activeElement.id === 'cancel-keep'
			&& document.getElementById('cancel-scope').hidden && document.getElementById('cancel-what').textContent.includes('alice')`)
	}
	askCancel()
	fill(t, page, "cancel-reason", "not this one")
	if _, err := chromedp.Run(page, chromedp.Evaluate[bool](`(() => { document.getElementById('cancel-keep').click(); return true; })()`)); err != nil {
		t.Fatal(err)
	}
	within(t, page, pageWait, "Keep it closes the question, the booking still drawn", fmt.Sprintf(`!document.getElementById('cancel').open && !!document.querySelector('.bar[data-id=%q]')`, alice.Id))
	want("after Keep it", "room-1", 3*day+10*time.Hour, 3*day+11*time.Hour+30*time.Minute, 5)

	// Confirmed, with a reason: gone from the page and the table; the history keeps the reason.
	if _, err := chromedp.Run(page, chromedp.Evaluate[bool](`(() => { document.getElementById('details').close(); return true; })()`)); err != nil {
		t.Fatal(err)
	}
	askCancel()
	within(t, page, pageWait, "the reason field starts empty", `document.getElementById('cancel-reason').value === ''`)
	fill(t, page, "cancel-reason", "room closed for cleaning")
	if _, err := chromedp.Run(page, chromedp.Evaluate[bool](`(() => { document.getElementById('cancel-confirm').click(); return true; })()`)); err != nil {
		t.Fatal(err)
	}
	within(t, page, pageWait, "cancelled: the dialogs closed, the bar gone, the reason said", fmt.Sprintf(`!document.getElementById('cancel').open && !document.getElementById('details').open
		&& !document.querySelector('.bar[data-id=%q]') && document.getElementById('message').textContent.includes('Reason: room closed for cleaning')`, alice.Id))
	if got, ok := storedRow(t, ctx, db, alice.Id); ok {
		t.Fatalf("after the cancel the row is still there: %+v", got)
	}
	var history struct {
		Changes []struct{ Op, Actor, Reason string }
	}
	getJSON(t, "http://"+d.http+"/v1/reservations/"+alice.Id+"/history", &history)
	ops := ""
	for _, ch := range history.Changes {
		ops += strings.TrimPrefix(ch.Op, "RESERVATION_UPDATE_TYPE_") + " "
	}
	last := history.Changes[len(history.Changes)-1]
	if ops != "CREATE UPDATE UPDATE UPDATE UPDATE DELETE " || last.Reason != "room closed for cleaning" || last.Actor != "alice" {
		t.Fatalf("the history: %s, its last %+v; want a create, the 4 moves, and the cancel by alice (auth off: the booking's user) for the reason given", ops, last)
	}
}

// getJSON GETs url and decodes its JSON answer into v, failing unless it is 200.
func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %s (%v)", url, resp.Status, body, err)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v: %s", url, err, body)
	}
}

// TestTimelinePageSeries shows a series as one, in headless Chromium at a phone's 390 px
// against a real reservationd: every bar of the series is marked, and opening one outlines
// them all (and no other); its details say which of the series it is. Its Cancel offers "only
// this one" (the default) and "this and the following ones": the latter, from the third of
// five, cancels the last three with the reason given (in their history); the former then
// cancels one alone. Each step is checked in the database; the layout checks of the desk test
// hold with the series' dialog open.
func TestTimelinePageSeries(t *testing.T) {
	db, dsn := repotest.NewDB(t)
	d := startDaemon(t, "RESERVATION_MYSQL_DSN="+dsn, "RESERVATION_LOCK=local")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d.waitServing(t, ctx, d.dial(t))
	c := pb.NewReservationServiceClient(d.dial(t))
	week := time.Date(2030, 3, 4, 0, 0, 0, 0, time.UTC) // a Monday
	const day = 24 * time.Hour
	// Monday to Friday, 09:00-10:00: five occurrences of one series.
	series, err := c.ReserveSeries(ctx, &pb.ReserveSeriesRequest{First: &pb.Reservation{UserId: "dana", ResourceId: "room-3", Note: "course",
		Start: timestamppb.New(week.Add(9 * time.Hour)), End: timestamppb.New(week.Add(10 * time.Hour))}, Rrule: "FREQ=DAILY;COUNT=5", TimeZone: "UTC"})
	if err != nil {
		t.Fatal(err)
	}
	occ := series.Reservations
	slices.SortFunc(occ, func(a, b *pb.Reservation) int { return a.Start.AsTime().Compare(b.Start.AsTime()) })
	if len(occ) != 5 || series.SeriesId == "" {
		t.Fatalf("the series: %d occurrences, id %q", len(occ), series.SeriesId)
	}
	alone, err := c.Reserve(ctx, &pb.ReserveRequest{Reservation: &pb.Reservation{UserId: "erin", ResourceId: "room-3", Note: "alone",
		Start: timestamppb.New(week.Add(5*day + 9*time.Hour)), End: timestamppb.New(week.Add(5*day + 10*time.Hour))}})
	if err != nil {
		t.Fatal(err)
	}
	other := alone.Reservation
	inSeries := func() int {
		t.Helper()
		var n int
		if err := db.GetContext(ctx, &n, "SELECT COUNT(*) FROM reservations WHERE series_id = ?", series.SeriesId); err != nil {
			t.Fatal(err)
		}
		return n
	}
	page := browserSized(t, 390, 800)
	screenshotOnFailure(t, page, "timeline-series.png")
	click := func(js string) {
		t.Helper()
		// A click from script: the live feed may redraw what is clicked between a mouse's press and release.
		if _, err := chromedp.Run(page, chromedp.Evaluate[bool](`(() => { `+js+`; return true; })()`)); err != nil {
			t.Fatal(err)
		}
	}
	bar := func(r *pb.Reservation) string { return fmt.Sprintf(`document.querySelector('.bar[data-id=%q]')`, r.Id) }
	if err := chromedp.Do(page, chromedp.Navigate("http://"+d.http+"/?view=week&start=2030-03-04&resources=room-3")); err != nil {
		t.Fatal(err)
	}
	within(t, page, pageWait, "the series' five bars marked as one series, erin's not, none outlined", fmt.Sprintf(`document.getElementById('conn').textContent === 'live'
		&& document.querySelectorAll('.bar').length === 6 && [...document.querySelectorAll('.bar.series')].filter((b) => b.dataset.series === %q).length === 5
		&& !%s.classList.contains('series') && !document.querySelector('.series-selected')`, series.SeriesId, bar(other)))
	if _, err := chromedp.Run(page, chromedp.Evaluate[bool](pageChecks)); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		for _, name := range []string{"pageScroll", "header", "zone", "names"} {
			problem, err := chromedp.Run(page, chromedp.Evaluate[string]("checks."+name+"()"))
			if err != nil {
				t.Fatal(err)
			}
			if problem != "" {
				t.Errorf("%s, %s: %s", when, name, problem)
			}
		}
	}
	check("the series drawn")

	// Opening Wednesday's outlines the whole series; its details say which one it is.
	click(bar(occ[2]) + ".click()")
	within(t, page, pageWait, "the whole series outlined, and only it; the details say which of it this is", fmt.Sprintf(`document.getElementById('details').open
		&& document.querySelectorAll('.bar.series-selected').length === 5 && !%s.classList.contains('series-selected')
		&& document.getElementById('details-list').textContent.includes('3 of the 5 bookings of this series shown')`, bar(other)))
	details, _ := chromedp.Run(page, chromedp.Evaluate[string](`[...document.querySelectorAll('#details-list dt')].find((dt) => dt.textContent === 'Series').nextElementSibling.textContent`))
	t.Logf("an occurrence's details, Series: %s", details)
	click(`document.querySelector('#details button[value="close"]').click()`)
	within(t, page, pageWait, "closed, nothing outlined", `!document.getElementById('details').open && !document.querySelector('.series-selected')`)

	// Cancel from Wednesday: "only this one" is the default, "this and the following ones" chosen.
	askCancel := func(r *pb.Reservation) {
		t.Helper()
		click(bar(r) + ".click()")
		within(t, page, pageWait, "the details open", `document.getElementById('details').open`)
		click(`document.getElementById('details-cancel').click()`)
		within(t, page, pageWait, "Cancel asks which, only this one checked, Keep it focused, the dialog inside the window", `document.getElementById('cancel').open
			&& !document.getElementById('cancel-scope').hidden && document.getElementById('cancel-only').checked && !document.getElementById('cancel-following').checked
			&& document.activeElement.id === 'cancel-keep' && document.getElementById('cancel-what').textContent.includes('one of a series')
			&& document.getElementById('cancel-confirm').textContent === 'Cancel reservation'
			&& [...document.querySelectorAll('#cancel *')].every((e) => e.getBoundingClientRect().right <= innerWidth + 0.5)`)
	}
	askCancel(occ[2])
	check("the series' cancel open")
	click(`document.getElementById('cancel-following').click()`)
	within(t, page, pageWait, "the button says what it cancels", `document.getElementById('cancel-confirm').textContent === 'Cancel this and the following'`)
	fill(t, page, "cancel-reason", "course ends early")
	click(`document.getElementById('cancel-confirm').click()`)
	within(t, page, pageWait, "Wednesday's and the following ones gone, said with the reason; Monday's, Tuesday's and erin's kept", fmt.Sprintf(`!document.getElementById('cancel').open
		&& !document.getElementById('details').open && !%s && !%s && !%s && !!%s && !!%s && !!%s
		&& document.getElementById('message').textContent.startsWith("Cancelled 3 bookings of dana's series") && document.getElementById('message').textContent.includes('Reason: course ends early')`,
		bar(occ[2]), bar(occ[3]), bar(occ[4]), bar(occ[0]), bar(occ[1]), bar(other)))
	msg, _ := chromedp.Run(page, chromedp.Text(chromedp.ID("message")))
	t.Logf("this and the following ones: %s", msg)
	if n := inSeries(); n != 2 {
		t.Fatalf("after cancelling this and the following ones, %d of the series are stored; want Monday's and Tuesday's", n)
	}
	if _, ok := storedRow(t, ctx, db, other.Id); !ok {
		t.Fatal("erin's booking, of no series, was cancelled with the series")
	}
	var history struct {
		Changes []struct{ Op, Reason string }
	}
	getJSON(t, "http://"+d.http+"/v1/reservations/"+occ[4].Id+"/history", &history)
	if last := history.Changes[len(history.Changes)-1]; last.Op != "RESERVATION_UPDATE_TYPE_DELETE" || last.Reason != "course ends early" {
		t.Fatalf("the history of Friday's occurrence ends with %+v; want its cancel, for the reason given", last)
	}

	// "Only this one" on Tuesday's cancels it alone.
	askCancel(occ[1])
	click(`document.getElementById('cancel-confirm').click()`)
	within(t, page, pageWait, "Tuesday's alone gone", fmt.Sprintf(`!document.getElementById('cancel').open && !%s && !!%s && !!%s && document.querySelectorAll('.bar.series').length === 1`,
		bar(occ[1]), bar(occ[0]), bar(other)))
	if n := inSeries(); n != 1 {
		t.Fatalf("after cancelling only Tuesday's, %d of the series are stored; want Monday's", n)
	}
}
