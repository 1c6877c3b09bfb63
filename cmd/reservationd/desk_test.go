package main

import (
	"context"
	"flag"
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "reservation/proto/reservation/v1"
	"reservation/repo/repotest"
)

var (
	screenshotWide   = flag.String("screenshot-wide", "", "where TestTimelinePageAtTheDesk saves its screenshot at 1400 px (default: a temporary file)")
	screenshotNarrow = flag.String("screenshot-narrow", "", "where TestTimelinePageAtTheDesk saves its screenshot at 390 px (default: a temporary file)")
)

// pageChecks are the layout checks, run in the page: each returns "" or what is wrong.
const pageChecks = `
window.rectsOverlap = (a, b) => a.left < b.right - 0.5 && b.left < a.right - 0.5 && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5;
window.checks = {
  // The page itself never scrolls sideways: only the timeline does.
  pageScroll: () => document.documentElement.scrollWidth <= innerWidth ? "" : "the page is " + document.documentElement.scrollWidth + " px wide in a " + innerWidth + " px window",
  // Every header item lies inside the window.
  header: () => [...document.querySelectorAll("header > *, header nav > *, .legend li")].filter((e) => e.getBoundingClientRect().right > innerWidth + 0.5).map((e) => e.id || e.className || e.textContent).join(", "),
  // The zone and the legend are shown.
  zone: () => {
    const z = document.getElementById("zone");
    if (z.textContent !== "Times in UTC" || !z.getBoundingClientRect().width) return "zone: " + JSON.stringify(z.textContent);
    const items = [...document.querySelectorAll(".legend li")].filter((li) => li.getBoundingClientRect().width > 0).map((li) => li.textContent);
    return items.length === 7 ? "" : "legend: " + items.join(", ");
  },
  // Resource and pool names whole, and what is said under them (capacity, places taken, units,
  // disabled): not cut, not clipped, inside the window.
  names: () => [...document.querySelectorAll(".label .name, .label .meta")].filter((s) => s.scrollWidth > s.clientWidth + 0.5 || s.scrollHeight > s.clientHeight + 0.5
    || (s.classList.contains("name") && s.textContent !== s.closest(".row").dataset.name) || s.getBoundingClientRect().right > innerWidth
    || !s.getBoundingClientRect().width).map((s) => s.textContent).join(", "),
  // No time label runs into the next.
  ticks: () => {
    const r = [...document.querySelectorAll(".tick")].map((t) => t.getBoundingClientRect());
    for (let i = 0; i + 1 < r.length; i++) if (r[i].right > r[i + 1].left + 0.5) return "tick " + i + " ends at " + r[i].right + ", tick " + (i + 1) + " starts at " + r[i + 1].left;
    return r.length >= 4 ? "" : r.length + " ticks";
  },
  // A bar's text is readable: inside it, or in a label beside it that covers no bar and no other label.
  bars: (mustLabel) => {
    const bad = [];
    for (const track of document.querySelectorAll(".track")) {
      const bars = [...track.querySelectorAll(".bar")], labels = [...track.querySelectorAll(".bar-label")];
      for (const b of bars) {
        const l = labels.find((l) => l.dataset.for === b.dataset.id);
        const fits = b.scrollWidth <= b.clientWidth + 0.5 && !b.classList.contains("labelled-outside");
        if (!fits && !l) bad.push(b.dataset.text + ": cut, with no label");
        // The label says it all, or as much as fits from the start: who, then the note, then the rest.
        if (l && (!l.textContent || !b.dataset.text.startsWith(l.textContent) || l.scrollWidth > l.clientWidth + 0.5)) bad.push(b.dataset.text + ": label " + l.textContent);
        if (mustLabel.includes(b.dataset.text) && !l) bad.push(b.dataset.text + ": short, yet no label beside it");
      }
      for (const l of labels) for (const o of [...bars, ...labels]) if (o !== l && rectsOverlap(l.getBoundingClientRect(), o.getBoundingClientRect())) bad.push("label " + l.textContent + " covers " + (o.dataset.text || o.textContent));
      // Bookings that overlap in time (a resource with capacity) lie in lanes, never on each other.
      // (A bar drawn at its minimum width is wider than its time: back to back, it may lie on the next.)
      const widened = (b) => b.getBoundingClientRect().width > track.clientWidth * parseFloat(b.style.width) / 100 + 0.5;
      for (let i = 0; i < bars.length; i++) for (let j = i + 1; j < bars.length; j++) {
        if (rectsOverlap(bars[i].getBoundingClientRect(), bars[j].getBoundingClientRect()) && !widened(bars[i]) && !widened(bars[j])) bad.push(bars[i].dataset.text + " lies on " + bars[j].dataset.text);
      }
    }
    return bad.join("; ");
  },
};
true`

// TestTimelinePageAtTheDesk checks the page at a desk's 1400 px and a phone's 390 and 360 px: zone
// and legend shown, whole resource names (a pool's header and its units, a resource with
// capacity and its places taken among them), time labels apart, short bookings labelled beside
// their bar, overlapping ones in lanes, no sideways scroll but the timeline's; Cancel asks first, with an optional
// reason; a refused submit keeps the dialog and what was typed, the error beside its field.
func TestTimelinePageAtTheDesk(t *testing.T) {
	_, dsn := repotest.NewDB(t)
	d := startDaemon(t, "RESERVATION_MYSQL_DSN="+dsn, "RESERVATION_LOCK=local")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d.waitServing(t, ctx, d.dial(t))
	c := pb.NewReservationServiceClient(d.dial(t))
	// From the catalogue: a pool of two rooms (one never booked) and a lounge with 4 places.
	for _, r := range []*pb.Resource{{Id: "room-201", PoolId: "standard"}, {Id: "room-202", PoolId: "standard"}, {Id: "lounge", Capacity: 4}} {
		if _, err := c.PutResource(ctx, &pb.PutResourceRequest{Resource: r}); err != nil {
			t.Fatal(err)
		}
	}

	// 1400: a desk; 390: a phone (docs/timeline.md's screenshots); 360: the narrowest phones.
	for i, width := range []int{1400, 390, 360} {
		t.Run(fmt.Sprintf("%dpx", width), func(t *testing.T) {
			week := time.Date(2030, 3, 4+7*i, 0, 0, 0, 0, time.UTC) // a Monday; each width its own week
			book := func(user, resource string, from, to time.Duration, note string, st pb.ReservationStatus, hold time.Duration) *pb.Reservation {
				t.Helper()
				req := &pb.ReserveRequest{Reservation: &pb.Reservation{UserId: user, ResourceId: resource, Note: note, Status: st,
					Start: timestamppb.New(week.Add(from)), End: timestamppb.New(week.Add(to))}}
				if hold > 0 {
					req.Hold = durationpb.New(hold)
				}
				resp, err := c.Reserve(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				return resp.Reservation
			}
			const day = 24 * time.Hour
			alice := book("alice", "room-1", 9*time.Hour, 12*time.Hour, "board meeting", 0, 0)
			if _, err := c.Confirm(ctx, &pb.ConfirmRequest{Id: alice.Id}); err != nil {
				t.Fatal(err)
			}
			bob := book("bob", "meeting-room-north-wing-12", day+10*time.Hour, day+10*time.Hour+30*time.Minute, "standup", 0, 0)
			book("carol", "meeting-room-north-wing-12", day+10*time.Hour+30*time.Minute, day+11*time.Hour, "1:1", 0, 0)
			book("erin", "room-101", 2*day+14*time.Hour, 2*day+16*time.Hour, "viewing", 0, time.Hour)
			book("facilities", "room-101", 4*day, 5*day, "repairs", pb.ReservationStatus_RESERVATION_STATUS_BLOCKED, 0)
			book("gina", "lounge", 2*day+9*time.Hour, 2*day+12*time.Hour, "workshop", 0, 0)
			book("hal", "lounge", 2*day+10*time.Hour, 2*day+13*time.Hour, "", 0, 0)
			book("ivan", "room-201", 3*day+8*time.Hour, 3*day+18*time.Hour, "guest", 0, 0)

			page := browserSized(t, width, 800)
			url := fmt.Sprintf("http://%s/?view=week&start=%s&resources=room-1,meeting-room-north-wing-12,room-101,lounge,standard", d.http, week.Format("2006-01-02"))
			if err := chromedp.Do(page, chromedp.Navigate(url)); err != nil {
				t.Fatal(err)
			}
			within(t, page, pageWait, "the bookings drawn, the pool and the lounge from the catalogue", `document.querySelectorAll('.bar').length === 8 && document.getElementById('conn').textContent === 'live'
				&& !!document.querySelector('.pool-row[data-pool="standard"]') && !!document.querySelector('.row[data-resource="room-202"]')
				&& document.querySelector('.row[data-resource="lounge"] .label').textContent.includes('2/4 taken')`)
			if _, err := chromedp.Run(page, chromedp.Evaluate[bool](pageChecks)); err != nil {
				t.Fatal(err)
			}
			check := func(view string, names ...string) {
				t.Helper()
				for _, name := range names {
					arg := ""
					if name == "bars" {
						arg = `["bob · standup", "carol · 1:1"]`
					}
					problem, err := chromedp.Run(page, chromedp.Evaluate[string](fmt.Sprintf("checks.%s(%s)", name, arg)))
					if err != nil {
						t.Fatal(err)
					}
					if problem != "" {
						t.Errorf("%d px, %s view, %s: %s", width, view, name, problem)
					}
				}
			}
			check("week", "pageScroll", "header", "zone", "names", "ticks", "bars")
			if width < 500 {
				scrolls, err := chromedp.Run(page, chromedp.Evaluate[bool](`(() => { const m = document.getElementById('timeline'); return m.scrollWidth > m.clientWidth; })()`))
				if err != nil || !scrolls {
					t.Errorf("at %d px the timeline does not scroll sideways (%v): it must, within itself", width, err)
				}
			}
			file := ""
			if out := map[int]*string{1400: screenshotWide, 390: screenshotNarrow}[width]; out != nil {
				file = *out
			}
			saveScreenshot(t, page, file, fmt.Sprintf("timeline-%d.png", width), fmt.Sprintf("at %d px", width))

			// The day view of Tuesday: the hours apart, the short bookings now wide enough.
			if _, err := chromedp.Run(page, chromedp.Evaluate[bool](fmt.Sprintf(`(() => { history.replaceState(null, '', '?view=day&start=%s&resources=room-1,meeting-room-north-wing-12,room-101,lounge,standard'); readURL(); changed(); return true; })()`,
				week.Add(day).Format("2006-01-02")))); err != nil {
				t.Fatal(err)
			}
			within(t, page, pageWait, "the day view", `document.getElementById('view').value === 'day' && document.querySelectorAll('.bar').length === 2`)
			check("day", "pageScroll", "header", "zone", "names", "ticks")
			if _, err := chromedp.Run(page, chromedp.Evaluate[bool](`(() => { history.replaceState(null, '', location.search.replace(/view=day&start=[0-9-]+/, 'view=week&start=`+week.Format("2006-01-02")+`')); readURL(); changed(); return true; })()`)); err != nil {
				t.Fatal(err)
			}
			within(t, page, pageWait, "back to the week", `document.getElementById('view').value === 'week' && document.querySelectorAll('.bar').length === 8`)

			// Cancel asks first; "Keep it" keeps it.
			open := func() {
				t.Helper()
				// A click from script: a redraw may replace the bar between finding it and clicking it.
				if _, err := chromedp.Run(page, chromedp.Evaluate[bool](fmt.Sprintf(`(() => { document.querySelector('.bar[data-id=%q]').click(); return true; })()`, bob.Id))); err != nil {
					t.Fatal(err)
				}
				within(t, page, pageWait, "details open", `document.getElementById('details').open`)
				if err := chromedp.Do(page, chromedp.Click(chromedp.ID("details-cancel"))); err != nil {
					t.Fatal(err)
				}
				within(t, page, pageWait, "Cancel asks first, with a reason field and Keep it focused", `document.getElementById('cancel').open && document.activeElement.id === 'cancel-keep'
					&& document.getElementById('cancel-what').textContent.includes('bob') && !!document.getElementById('cancel-reason')`)
			}
			open()
			if err := chromedp.Do(page, chromedp.Click(chromedp.ID("cancel-keep"))); err != nil {
				t.Fatal(err)
			}
			within(t, page, pageWait, "Keep it closes the question", `!document.getElementById('cancel').open`)
			if _, err := c.Get(ctx, &pb.GetRequest{Id: bob.Id}); err != nil {
				t.Fatalf("after Keep it: %v", err)
			}
			// Confirmed, with a reason: gone, and the reason said.
			open()
			fill(t, page, "cancel-reason", "moved to Thursday")
			if err := chromedp.Do(page, chromedp.Click(chromedp.ID("cancel-confirm"))); err != nil {
				t.Fatal(err)
			}
			within(t, page, pageWait, "cancelled, with its reason said", fmt.Sprintf(`!document.getElementById('cancel').open && !document.getElementById('details').open
				&& !document.querySelector('.bar[data-id=%q]') && document.getElementById('message').textContent.includes('Reason: moved to Thursday')`, bob.Id))
			if _, err := c.Get(ctx, &pb.GetRequest{Id: bob.Id}); status.Code(err) != codes.NotFound {
				t.Fatalf("after the cancel: %v, want NOT_FOUND", err)
			}

			// A refused submit keeps the dialog and its input, the error beside its field.
			// A click from script, as for the bar above: the cancel's change reaches the page from the
			// feed and redraws the rows, and a redraw between the mouse's press and release (seen
			// under CI load) replaces the button, so that no click happens at all.
			if _, err := chromedp.Run(page, chromedp.Evaluate[bool](`(() => { document.querySelector('.row[data-resource="room-1"] .label button').click(); return true; })()`)); err != nil {
				t.Fatal(err)
			}
			within(t, page, pageWait, "the new-reservation dialog", `document.getElementById('new').open`)
			monday := week.Format("2006-01-02")
			fill(t, page, "new-start", monday+"T10:00", "new-end", monday+"T11:00", "new-user", "erin", "new-note", "follow-up")
			if err := chromedp.Do(page, chromedp.Click(chromedp.ID("new-submit"))); err != nil {
				t.Fatal(err)
			}
			beside := func(errID, inputID string) string {
				return fmt.Sprintf(`(() => { const e = document.getElementById(%q).getBoundingClientRect(), i = document.getElementById(%q).getBoundingClientRect();
					return e.top >= i.bottom - 1 && e.top - i.bottom < 48 && e.width > 0; })()`, errID, inputID)
			}
			within(t, page, pageWait, "the conflict beside the times, the dialog open with what was typed", `document.getElementById('new').open
				&& document.getElementById('new-when-error').textContent.includes("alice's booking") && document.getElementById('new-user').value === 'erin'
				&& document.getElementById('new-note').value === 'follow-up' && `+beside("new-when-error", "new-end"))
			fill(t, page, "new-start", monday+"T13:00", "new-end", monday+"T14:00", "new-user", "")
			if err := chromedp.Do(page, chromedp.Click(chromedp.ID("new-submit"))); err != nil {
				t.Fatal(err)
			}
			within(t, page, pageWait, "a missing user beside the user field, the old error gone", `document.getElementById('new').open
				&& !document.getElementById('new-user-error').hidden && document.getElementById('new-user-error').textContent.startsWith('user ')
				&& document.getElementById('new-when-error').hidden && document.getElementById('new-user').getAttribute('aria-invalid') === 'true'
				&& document.getElementById('new-note').value === 'follow-up' && `+beside("new-user-error", "new-user"))
			msg, _ := chromedp.Run(page, chromedp.Text(chromedp.ID("new-user-error")))
			t.Logf("%d px, missing user: %s", width, msg)
			fill(t, page, "new-user", "erin")
			if err := chromedp.Do(page, chromedp.Click(chromedp.ID("new-submit"))); err != nil {
				t.Fatal(err)
			}
			within(t, page, pageWait, "fixed, it is made and the dialog closes", `!document.getElementById('new').open
				&& [...document.querySelectorAll('.row[data-resource="room-1"] .bar')].some((b) => b.dataset.text === 'erin · follow-up')`)
			check("week", "pageScroll", "names", "bars")
		})
	}
}

// fill sets inputs by id (pairs of id and value) as typing would, and checks they hold it.
func fill(t *testing.T, page context.Context, idValues ...string) {
	t.Helper()
	for i := 0; i+1 < len(idValues); i += 2 {
		js := fmt.Sprintf(`(() => { const e = document.getElementById(%q); e.value = %q; e.dispatchEvent(new Event('input', {bubbles: true})); return e.value; })()`, idValues[i], idValues[i+1])
		got, err := chromedp.Run(page, chromedp.Evaluate[string](js))
		if err != nil || got != idValues[i+1] {
			t.Fatalf("set #%s to %q: it holds %q (%v)", idValues[i], idValues[i+1], got, err)
		}
	}
}
