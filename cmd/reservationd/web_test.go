package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"

	"reservation/auth"
	pb "reservation/proto/reservation/v1"
	"reservation/repo/repotest"
)

var screenshot = flag.String("screenshot", "", "where TestTimelinePage saves its screenshot of the week view (default: a temporary file)")

// browser starts headless Chromium (Debian's, in UTC) for the test, 1400 px wide.
func browser(t *testing.T) context.Context {
	t.Helper()
	return browserSized(t, 1400, 800)
}

// browserSized starts headless Chromium with a window of w × h CSS pixels.
func browserSized(t *testing.T, w, h int) context.Context {
	t.Helper()
	path := "/usr/bin/chromium"
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("%s: %v (apt-get install chromium; .ci/run does)", path, err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true), chromedp.Flag("disable-quic", true), chromedp.Flag("disable-component-update", true),
		chromedp.WindowSize(w, h), chromedp.Env("TZ=UTC"), chromedp.UserDataDir(t.TempDir()))
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(cancel)
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(cancelTimeout)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	// The window's size is not the page's in headless mode: set the viewport to it.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(int64(w), int64(h))); err != nil {
		t.Fatalf("viewport %dx%d: %v", w, h, err)
	}
	return ctx
}

// pageWait bounds how long a page test waits for the page to show something. It is a bound for
// failing, never an expected time: the legs of make test run packages side by side on two cores,
// and a redraw has been seen to take over 2 s there.
const pageWait = 15 * time.Second

// within polls the page until cond (a JavaScript expression) is true, failing after d.
func within(t *testing.T, page context.Context, d time.Duration, what, cond string) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		// An evaluation that fails (the page between two documents, say) counts as not yet;
		// its error is reported if the condition never holds.
		ok, err := chromedp.Run(page, chromedp.Evaluate[bool](cond))
		if err == nil && ok {
			return time.Since(start)
		}
		if time.Since(start) > d {
			if err != nil {
				t.Fatalf("%s: not within %s: %v", what, d, err)
			}
			state, err := chromedp.Run(page, chromedp.Evaluate[string](`JSON.stringify({conn: document.getElementById('conn').textContent,
				message: document.getElementById('message').textContent, bars: document.querySelectorAll('.bar').length,
				dialogs: [...document.querySelectorAll('dialog[open]')].map((d) => d.id), errors: [...document.querySelectorAll('.field-error:not([hidden])')].map((e) => e.id + ": " + e.textContent),
				rows: [...document.querySelectorAll('.row')].map(r => r.dataset.resource || 'pool ' + r.dataset.pool), url: location.href})`))
			t.Fatalf("%s: not within %s; the page: %s %v", what, d, state, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// drag presses the mouse on resource's row at from, moves to to, and releases.
func drag(t *testing.T, page context.Context, resource string, from, to time.Time, weekStart time.Time) {
	t.Helper()
	dragOn(t, page, fmt.Sprintf(`.row[data-resource=%q] .track`, resource), from, to, weekStart)
}

// dragOn drags across the week view's track that the CSS selector track names, from from to to.
func dragOn(t *testing.T, page context.Context, track string, from, to time.Time, weekStart time.Time) {
	t.Helper()
	js := fmt.Sprintf(`(() => { const r = document.querySelector(%q).getBoundingClientRect(); return {X: r.x, Y: r.y, W: r.width, H: r.height}; })()`, track)
	box, err := chromedp.Run(page, chromedp.Evaluate[struct{ X, Y, W, H float64 }](js))
	if err != nil {
		t.Fatal(err)
	}
	x := func(at time.Time) float64 { return box.X + box.W*at.Sub(weekStart).Hours()/(7*24) }
	y := box.Y + box.H/2
	held := func(p *input.DispatchMouseEventParams) { p.Buttons = 1 }
	err = chromedp.Do(page,
		chromedp.MouseEvent(chromedp.MousePressed, x(from), y, chromedp.ButtonLeft, held, chromedp.ClickCount(1)),
		chromedp.MouseEvent(chromedp.MouseMoved, (x(from)+x(to))/2, y, chromedp.ButtonLeft, held),
		chromedp.MouseEvent(chromedp.MouseMoved, x(to), y, chromedp.ButtonLeft, held),
		chromedp.MouseEvent(chromedp.MouseReleased, x(to), y, chromedp.ButtonLeft, chromedp.ClickCount(1)),
	)
	if err != nil {
		t.Fatal(err)
	}
}

// TestTimelinePage drives the timeline in headless Chromium against a real reservationd:
// existing bookings are drawn, gRPC writes appear and disappear live, dragging reserves, a
// conflict is explained, and the details dialog confirms.
func TestTimelinePage(t *testing.T) {
	_, dsn := repotest.NewDB(t)
	d := startDaemon(t, "RESERVATION_MYSQL_DSN="+dsn, "RESERVATION_LOCK=local")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	d.waitServing(t, ctx, d.dial(t))
	c := pb.NewReservationServiceClient(d.dial(t))
	week := time.Date(2030, 3, 4, 0, 0, 0, 0, time.UTC) // a Monday
	book := func(user, resource string, from, to time.Duration, note string) *pb.Reservation {
		t.Helper()
		resp, err := c.Reserve(ctx, &pb.ReserveRequest{Reservation: &pb.Reservation{UserId: user, ResourceId: resource, Note: note,
			Start: timestamppb.New(week.Add(from)), End: timestamppb.New(week.Add(to))}})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Reservation
	}
	alice := book("alice", "room-1", 9*time.Hour, 12*time.Hour, "board meeting")
	book("bob", "room-2", 24*time.Hour+10*time.Hour, 24*time.Hour+14*time.Hour, "")
	blocked, err := c.Reserve(ctx, &pb.ReserveRequest{Reservation: &pb.Reservation{UserId: "facilities", ResourceId: "room-3", Note: "repairs",
		Status: pb.ReservationStatus_RESERVATION_STATUS_BLOCKED, Start: timestamppb.New(week.Add(4 * 24 * time.Hour)), End: timestamppb.New(week.Add(5 * 24 * time.Hour))}})
	if err != nil {
		t.Fatal(err)
	}

	page := browser(t)
	url := "http://" + d.http + "/?view=week&start=2030-03-04&resources=room-1,room-2,room-3"
	if err := chromedp.Do(page, chromedp.Navigate(url)); err != nil {
		t.Fatal(err)
	}
	within(t, page, pageWait, "existing reservations drawn", `document.querySelectorAll('.bar').length === 3 && document.getElementById('conn').textContent === 'live'`)
	within(t, page, pageWait, "bars are buttons with their booking", fmt.Sprintf(
		`(() => { const b = document.querySelector('.bar[data-id=%q]'); return b.tagName === 'BUTTON' && b.textContent.includes('alice') && b.classList.contains('PENDING'); })()`, alice.Id))
	within(t, page, pageWait, "blocked drawn as blocked", fmt.Sprintf(`document.querySelector('.bar[data-id=%q]').classList.contains('BLOCKED')`, blocked.Reservation.Id))

	// Live: a reservation made through gRPC appears without a reload (the time it took is logged, not
	// asserted); its cancel removes it.
	live := book("carol", "room-2", 2*24*time.Hour+9*time.Hour, 2*24*time.Hour+11*time.Hour, "live")
	took := within(t, page, pageWait, "a gRPC reservation appears", fmt.Sprintf(`!!document.querySelector('.bar[data-id=%q]')`, live.Id))
	t.Logf("a reservation made through gRPC appeared on the page after %s", took)
	if _, err := c.Cancel(ctx, &pb.CancelRequest{Id: live.Id}); err != nil {
		t.Fatal(err)
	}
	took = within(t, page, pageWait, "a cancelled reservation disappears", fmt.Sprintf(`!document.querySelector('.bar[data-id=%q]')`, live.Id))
	t.Logf("a cancel through gRPC removed the bar after %s", took)

	// Drag across empty time on room-3 to reserve Thursday 10:00-12:00.
	drag(t, page, "room-3", week.Add(3*24*time.Hour+10*time.Hour), week.Add(3*24*time.Hour+12*time.Hour), week)
	within(t, page, pageWait, "the new-reservation dialog opens", `document.getElementById('new').open`)
	if err := chromedp.Do(page, chromedp.SetValue(chromedp.ID("new-user"), "dana"), chromedp.SetValue(chromedp.ID("new-note"), "interviews"),
		chromedp.Click(chromedp.ID("new-submit"))); err != nil {
		t.Fatal(err)
	}
	within(t, page, pageWait, "the dragged reservation is drawn", `[...document.querySelectorAll('.row[data-resource="room-3"] .bar')].some(b => b.textContent.includes('dana'))`)
	got, err := c.Filter(ctx, &pb.FilterRequest{ResourceId: "room-3", UserId: "dana"})
	if err != nil || len(got.Reservations) != 1 {
		t.Fatalf("the dragged reservation through gRPC: %v, %v", got, err)
	}
	dr := got.Reservations[0]
	if s, e := dr.Start.AsTime().Sub(week), dr.End.AsTime().Sub(week); s != 3*24*time.Hour+10*time.Hour || e != 3*24*time.Hour+12*time.Hour || dr.Note != "interviews" {
		t.Errorf("dragged reservation spans %s to %s after the week's start, note %q; want Thursday 10:00-12:00", s, e, dr.Note)
	}

	// A drag from free time into alice's meeting is refused, in words naming it.
	drag(t, page, "room-1", week.Add(13*time.Hour), week.Add(11*time.Hour), week)
	within(t, page, pageWait, "the dialog opens", `document.getElementById('new').open`)
	if err := chromedp.Do(page, chromedp.SetValue(chromedp.ID("new-user"), "erin"), chromedp.Click(chromedp.ID("new-submit"))); err != nil {
		t.Fatal(err)
	}
	within(t, page, pageWait, "the conflict is explained beside the times, in the dialog still open with what was typed", `(() => {
		const m = document.getElementById('new-when-error');
		return document.getElementById('new').open && !m.hidden && m.textContent.includes('already booked') && m.textContent.includes("alice's booking")
			&& document.getElementById('new-user').value === 'erin' && document.getElementById('new-start').getAttribute('aria-invalid') === 'true'; })()`)
	message, _ := chromedp.Run(page, chromedp.Text(chromedp.ID("new-when-error")))
	t.Logf("conflict message: %s", message)
	if err := chromedp.Do(page, chromedp.Click(`#new button[value="cancel"]`)); err != nil {
		t.Fatal(err)
	}
	within(t, page, pageWait, "Close closes the dialog", `!document.getElementById('new').open`)

	// Click alice's bar, confirm it from the details dialog.
	if err := chromedp.Do(page, chromedp.Click(chromedp.CSS(fmt.Sprintf(`.bar[data-id=%q]`, alice.Id)))); err != nil {
		t.Fatal(err)
	}
	within(t, page, pageWait, "details show the reservation", fmt.Sprintf(`document.getElementById('details').open && document.getElementById('details-list').textContent.includes(%q)`, alice.Id))
	if err := chromedp.Do(page, chromedp.Click(chromedp.ID("details-confirm"))); err != nil {
		t.Fatal(err)
	}
	within(t, page, pageWait, "the bar turns confirmed", fmt.Sprintf(`document.querySelector('.bar[data-id=%q]').classList.contains('CONFIRMED')`, alice.Id))
	if r, err := c.Get(ctx, &pb.GetRequest{Id: alice.Id}); err != nil || r.Reservation.Status != pb.ReservationStatus_RESERVATION_STATUS_CONFIRMED {
		t.Fatalf("confirmed from the page, through gRPC: %v, %v", r, err)
	}

	if _, err := chromedp.Run(page, chromedp.Evaluate[bool](`document.getElementById('message').hidden = true`)); err != nil {
		t.Fatal(err)
	}
	saveScreenshot(t, page, *screenshot, "timeline-week.png", "of the week view")
}

// saveScreenshot saves the whole page as a PNG to file, or to name in a temporary directory
// when file is "", and logs where, with what (it says what the picture shows).
func saveScreenshot(t *testing.T, page context.Context, file, name, what string) {
	t.Helper()
	png, err := chromedp.Run(page, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if len(png) < 1000 {
		t.Fatalf("screenshot %s: %d bytes", what, len(png))
	}
	if file == "" {
		file = t.TempDir() + "/" + name
	}
	if err := os.WriteFile(file, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s: %s (%d bytes)", what, file, len(png))
}

// TestTimelinePageSignsInAndScales: with auth on, the page asks for a token and draws only
// what it may see; 50 resources over a week are drawn whole; bars work from the keyboard.
func TestTimelinePageSignsInAndScales(t *testing.T) {
	_, dsn := repotest.NewDB(t)
	file := t.TempDir() + "/tokens.json"
	os.WriteFile(file, []byte(fmt.Sprintf(`{"tokens": [{"sha256": %q, "user": "alice", "role": "user"}, {"sha256": %q, "user": "desk", "role": "admin"}]}`,
		auth.Hash("alice-secret"), auth.Hash("desk-secret"))), 0o600)
	d := startDaemon(t, "RESERVATION_MYSQL_DSN="+dsn, "RESERVATION_LOCK=local", "RESERVATION_AUTH_FILE="+file)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	d.waitServing(t, ctx, d.dial(t))
	c := pb.NewReservationServiceClient(d.dial(t))
	admin := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer desk-secret")
	week := time.Date(2030, 3, 4, 0, 0, 0, 0, time.UTC)
	// 50 resources, 10 bookings each over the week; every third is alice's.
	aliceCount := 0
	for r := range 50 {
		var batch []*pb.Reservation
		for i := range 10 {
			user := "bob"
			if (r*10+i)%3 == 0 {
				user = "alice"
				aliceCount++
			}
			start := week.Add(time.Duration(i*16) * time.Hour)
			batch = append(batch, &pb.Reservation{UserId: user, ResourceId: fmt.Sprintf("room-%02d", r),
				Start: timestamppb.New(start), End: timestamppb.New(start.Add(3 * time.Hour))})
		}
		if _, err := c.ReserveBatch(admin, &pb.ReserveBatchRequest{Reservations: batch}); err != nil {
			t.Fatal(err)
		}
	}

	page := browser(t)
	if err := chromedp.Do(page, chromedp.Navigate("http://"+d.http+"/?view=week&start=2030-03-04")); err != nil {
		t.Fatal(err)
	}
	within(t, page, pageWait, "the page asks for a token", `document.getElementById('login').open`)
	if err := chromedp.Do(page, chromedp.SetValue(chromedp.ID("login-token"), "alice-secret"), chromedp.KeyEvent("\r")); err != nil {
		t.Fatal(err)
	}
	within(t, page, pageWait, "alice's bookings, and only hers", fmt.Sprintf(
		`document.querySelectorAll('.bar').length === %d && [...document.querySelectorAll('.bar')].every(b => b.textContent.startsWith('alice'))`, aliceCount))

	// As the desk (admin): all 500 bars over 50 rows.
	if err := chromedp.Do(page, chromedp.Navigate("http://"+d.http+"/?view=week&start=2030-03-04")); err != nil {
		t.Fatal(err)
	}
	// Reload through the browser, which waits for the new page: a reload from script returned
	// at once, and the next evaluation ran into the navigation ("Inspected target navigated
	// or closed", seen under CI load).
	if _, err := chromedp.Run(page, chromedp.Evaluate[bool](`sessionStorage.setItem('token', 'desk-secret'); true`)); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(page, chromedp.Reload()); err != nil {
		t.Fatal(err)
	}
	within(t, page, pageWait, "50 resources and 500 bookings drawn", `document.querySelectorAll('.row').length === 50 && document.querySelectorAll('.bar').length === 500`)
	ms, err := chromedp.Run(page, chromedp.Evaluate[float64](`(() => { const t = performance.now(); draw(); document.body.offsetHeight; return performance.now() - t; })()`))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("one full redraw of 50 resources × 500 bookings, layout included, took %.1f ms in headless Chromium", ms)

	// The keyboard reaches a bar and opens it.
	if err := chromedp.Do(page, chromedp.Focus(chromedp.CSS(".bar")), chromedp.KeyEvent("\r")); err != nil {
		t.Fatal(err)
	}
	within(t, page, pageWait, "Enter on a focused bar opens its details", `document.getElementById('details').open`)
}

// TestTimelineFindsAFreeResource: the timeline's "find a free …" box lists the resources a
// selector picks that are free for the night asked (SearchAvailability over HTTP), an offer
// opens the new-booking dialog for that window, and a malformed selector is explained.
func TestTimelineFindsAFreeResource(t *testing.T) {
	_, dsn := repotest.NewDB(t)
	d := startDaemon(t, "RESERVATION_MYSQL_DSN="+dsn, "RESERVATION_LOCK=local")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	d.waitServing(t, ctx, d.dial(t))
	c := pb.NewReservationServiceClient(d.dial(t))
	for _, r := range []*pb.Resource{
		{Id: "room-1", PoolId: "double", Labels: map[string]string{"view": "sea"}},
		{Id: "room-2", PoolId: "double", Labels: map[string]string{"view": "sea"}},
		{Id: "room-3", Labels: map[string]string{"view": "city"}},
	} {
		if _, err := c.PutResource(ctx, &pb.PutResourceRequest{Resource: r}); err != nil {
			t.Fatal(err)
		}
	}
	night := time.Date(2030, 3, 5, 15, 0, 0, 0, time.UTC)
	if _, err := c.Reserve(ctx, &pb.ReserveRequest{Reservation: &pb.Reservation{UserId: "bob", ResourceId: "room-1",
		Start: timestamppb.New(night), End: timestamppb.New(night.Add(20 * time.Hour))}}); err != nil {
		t.Fatal(err)
	}

	page := browser(t)
	if err := chromedp.Do(page, chromedp.Navigate("http://"+d.http+"/?view=week&start=2030-03-04")); err != nil {
		t.Fatal(err)
	}
	within(t, page, pageWait, "the page is live", `document.getElementById('conn').textContent === 'live'`)
	// The window in the browser's own zone, as the inputs take it.
	set := fmt.Sprintf(`(() => { document.getElementById('find-selector').value = 'view=sea';
		document.getElementById('find-start').value = localInput(%q); document.getElementById('find-end').value = localInput(%q);
		document.getElementById('find-submit').click(); return true; })()`, night.Format(time.RFC3339), night.Add(20*time.Hour).Format(time.RFC3339))
	if _, err := chromedp.Run(page, chromedp.Evaluate[bool](set)); err != nil {
		t.Fatal(err)
	}
	within(t, page, pageWait, "room-2 alone offered", `(() => { const o = [...document.querySelectorAll('#find-results .offer')].map(b => b.dataset.resource);
		return o.length === 1 && o[0] === 'room-2'; })()`)
	if err := chromedp.Do(page, chromedp.Click(`#find-results .offer`)); err != nil {
		t.Fatal(err)
	}
	within(t, page, pageWait, "the offer opens the new booking for its window", fmt.Sprintf(
		`document.getElementById('new').open && document.getElementById('new-what').textContent === 'room-2' && new Date(document.getElementById('new-start').value).toISOString() === %q`,
		night.Format("2006-01-02T15:04:05.000Z")))
	if _, err := chromedp.Run(page, chromedp.Evaluate[bool](`(() => { document.getElementById('new').close();
		document.getElementById('find-selector').value = 'view in (sea'; document.getElementById('find-submit').click(); return true; })()`)); err != nil {
		t.Fatal(err)
	}
	within(t, page, pageWait, "a malformed selector explained", `(() => { const e = document.getElementById('find-error');
		return !e.hidden && e.textContent.includes('selector') && e.textContent.includes('at byte 13'); })()`)
}
