package chaos

import (
	"context"
	"flag"
	"fmt"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	pb "reservation/proto/reservation/v1"
)

var (
	rounds  = flag.Int("rounds", 1, "rounds of faults; each round injects every fault once")
	writers = flag.Int("writers", 12, "concurrent writers")
)

// fault breaks something and mends it; it returns what it did, for the report.
type fault struct {
	name string
	run  func(ctx context.Context, c *Cluster) (string, error)
}

// The suite runs with the production defaults of the lock (lease, wait) and its breaker: a
// shorter lease here once hid that a crashed replica froze its resources for the 30s the lease
// then lasted.
const settle = 1500 * time.Millisecond // between faults

var faults = []fault{
	{"Redis SIGKILL, restart after 1.5s", func(ctx context.Context, c *Cluster) (string, error) {
		c.Redis.Kill()
		time.Sleep(1500 * time.Millisecond)
		if err := c.Redis.Restart(); err != nil {
			return "", err
		}
		return "restarted empty", WaitTCP(ctx, c.Redis.Addr)
	}},
	{"Redis SIGSTOP 2.5s (longer than the locks' 2s lease)", func(ctx context.Context, c *Cluster) (string, error) {
		c.Redis.Signal(syscall.SIGSTOP)
		time.Sleep(2500 * time.Millisecond)
		return "resumed", c.Redis.Signal(syscall.SIGCONT)
	}},
	{"replica SIGKILL mid-load, restart after 1s", func(ctx context.Context, c *Cluster) (string, error) {
		leader, _ := c.Leader(ctx)
		victim := (leader + 1) % len(c.Replicas) // not the leader: that is the next fault
		return killReplica(ctx, c, victim)
	}},
	{"feed leader's replica SIGKILL, restart after 1s", func(ctx context.Context, c *Cluster) (string, error) {
		leader, err := c.Leader(ctx)
		if err != nil || leader < 0 {
			return "", fmt.Errorf("no feed leader found: %v", err)
		}
		return killReplica(ctx, c, leader)
	}},
	{"KILL of the service's MySQL connections", func(ctx context.Context, c *Cluster) (string, error) {
		n, err := c.KillConnections(ctx)
		return fmt.Sprintf("%d connections killed", n), err
	}},
	{"proxy adds 300ms per chunk to MySQL for 3s", func(ctx context.Context, c *Cluster) (string, error) {
		for _, r := range c.Replicas {
			r.Proxy.SetLatency(300 * time.Millisecond)
		}
		time.Sleep(3 * time.Second)
		for _, r := range c.Replicas {
			r.Proxy.SetLatency(0)
		}
		return "latency removed", nil
	}},
	{"proxy cuts every MySQL connection", func(ctx context.Context, c *Cluster) (string, error) {
		n := 0
		for _, r := range c.Replicas {
			n += r.Proxy.Cut()
		}
		return fmt.Sprintf("%d connections cut", n), nil
	}},
}

func killReplica(ctx context.Context, c *Cluster, i int) (string, error) {
	r := c.Replicas[i]
	r.Kill()
	time.Sleep(time.Second)
	if err := r.Restart(); err != nil {
		return "", err
	}
	return r.Name + " restarted", r.WaitServing(ctx)
}

// TestChaos runs writers and listeners against three replicas while every fault above is
// injected, then checks the promise: no overlap, no acknowledged write lost, no change
// lost, repeated or out of order. `make chaos` runs more rounds.
func TestChaos(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Minute)
	defer cancel()
	c, err := NewCluster(ctx, Options{Dir: t.TempDir(), Replicas: 3})
	t.Cleanup(c.Close)
	if err != nil {
		t.Fatal(err)
	}

	h := newHistory()
	h.Feed.Exclude("lin-") // the linearizability check's calls: checked by it
	load, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := range *writers {
		wg.Go(func() { Writer(load, i, c.Replicas, h, 3) })
	}
	listenCtx, stopListeners := context.WithCancel(ctx)
	defer stopListeners()
	listeners := make([]*Listener, 3)
	var lwg sync.WaitGroup
	for i := range listeners {
		listeners[i] = NewListener()
		lwg.Go(func() { listeners[i].Run(listenCtx, c.Replicas, uint64(i)) })
	}
	lin := NewLinHistory() // the linearizability check's calls, on resources of their own
	lin.Phase("no fault", linResources)
	for i := range linClients {
		wg.Go(func() { LinClient(load, i, c.Replicas, lin) })
	}

	type injected struct {
		name, what string
		start, end time.Time
	}
	var done []injected
	time.Sleep(2 * time.Second) // load before the first fault
	for round := range *rounds {
		for _, f := range faults {
			lin.Phase(fmt.Sprintf("round %d, %s", round+1, f.name), linResources)
			start := time.Now()
			what, err := f.run(ctx, c)
			if err != nil {
				t.Fatalf("%s: %v", f.name, err)
			}
			done = append(done, injected{f.name, what, start, time.Now()})
			time.Sleep(settle) // let it recover under load
		}
	}
	stopLoad()
	wg.Wait()
	stopped := time.Now()

	report := checkPromise(ctx, t, c, h, listeners, stopListeners, &lwg, stopped)
	for _, f := range done {
		failed, stall := h.During(f.start, f.end.Add(settle))
		_, after := h.During(f.end, f.end.Add(settle))
		report.info("fault: "+f.name, fmt.Sprintf("%s; lasted %s; %d calls failed; longest pause in successes %s, %s of it after the fault ended",
			f.what, f.end.Sub(f.start).Round(time.Millisecond), failed, stall.Round(time.Millisecond), after.Round(time.Millisecond)))
	}
	checkLinearizability(t, lin, report)
	t.Log("\n" + report.String())
	if report.failed {
		t.Fatal("a must-be-zero figure is not zero")
	}
}

// checkPromise waits, bounded, until every listener has the whole stored feed, stops them,
// and checks the promise against the database: no overlap, no acknowledged write lost, no
// change lost, repeated or out of order on any listener. It returns the report for the
// caller to add to and print; a must-be-zero figure that is not zero marks it failed.
func checkPromise(ctx context.Context, t *testing.T, c *Cluster, h *History, listeners []*Listener, stopListeners func(), lwg *sync.WaitGroup, stopped time.Time) *table {
	t.Helper()
	// Every change must reach every listener; wait for it, bounded. A call the writers gave
	// up on when the load stopped may still commit on its server until its deadline, so the
	// feed counts as final only once that deadline (and the stamping after it) has passed.
	db := c.Admin
	var stamped, unstamped, maxSeq int64
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := db.QueryRowContext(ctx, "SELECT COUNT(seq), COUNT(*) - COUNT(seq), COALESCE(MAX(seq), 0) FROM "+c.Database+".reservation_changes").Scan(&stamped, &unstamped, &maxSeq)
		if err != nil && time.Now().After(deadline) {
			t.Fatal(err)
		}
		if err != nil {
			// A server still recovering from the last fault (a Galera node rejoining): ask again.
			t.Logf("reading the feed's progress: %v", err)
		}
		caughtUp := err == nil && unstamped == 0 && time.Since(stopped) > callTimeout+time.Second
		for _, l := range listeners {
			caughtUp = caughtUp && l.Last() >= uint64(maxSeq)
		}
		if caughtUp || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	stopListeners()
	lwg.Wait()

	// The checks.
	report := &table{}
	count := func(q string, args ...any) int {
		var n int
		if err := db.QueryRowContext(ctx, q, args...).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}
	report.must("overlapping pairs of reservations", count(`SELECT COUNT(*) FROM `+c.Database+`.reservations a JOIN `+c.Database+`.reservations b
		ON a.resource_id = b.resource_id AND a.id < b.id AND a.start_at < b.end_at AND b.start_at < a.end_at`))

	stored := map[string]string{} // note (request id) -> reservation id
	rows, err := db.QueryContext(ctx, "SELECT note, id FROM "+c.Database+".reservations WHERE resource_id NOT LIKE 'lin-%'")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var note, id string
		if err := rows.Scan(&note, &id); err != nil {
			t.Fatal(err)
		}
		stored[note] = id
	}
	rows.Close()
	// A reservation's DELETE in the feed: how a cancel whose answer was lost shows it was done.
	deleted := map[string]bool{}
	rows, err = db.QueryContext(ctx, "SELECT reservation_id FROM "+c.Database+".reservation_changes WHERE op = 3")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		deleted[id] = true
	}
	rows.Close()
	var lost, resurrected, phantom, cancelledUnanswered int
	storedIDs := map[string]bool{}
	for _, id := range stored {
		storedIDs[id] = true
	}
	for _, id := range h.Acked {
		switch {
		case h.Cancelled[id] || storedIDs[id]:
		case h.CancelUnknown[id] && deleted[id]:
			cancelledUnanswered++ // the client lost the answer, the feed has the cancel
		default:
			lost++
			t.Logf("lost: reservation %s was acknowledged; cancel unanswered %v, DELETE in the feed %v", id, h.CancelUnknown[id], deleted[id])
		}
	}
	for id := range h.Cancelled {
		if storedIDs[id] {
			resurrected++
		}
	}
	for req, id := range stored {
		if acked, ok := h.Acked[req]; (ok && acked != id) || (!ok && !h.Unknown[req]) {
			phantom++
		}
	}
	report.must("acknowledged reservations missing (no cancel of theirs in the feed)", lost)
	report.info("acknowledged reservations cancelled by a call whose answer was lost (their DELETE is in the feed)", fmt.Sprint(cancelledUnanswered))
	report.must("acknowledged cancels still stored", resurrected)
	report.must("stored reservations no call made or might have made", phantom)
	report.must("changes left without a seq", int(unstamped))
	report.must("seqs missing from the stored feed (1..max)", int(maxSeq-stamped))

	var feed []struct {
		seq uint64
		id  string
		op  int
	}
	rows, err = db.QueryContext(ctx, "SELECT seq, reservation_id, op FROM "+c.Database+".reservation_changes ORDER BY seq")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var f struct {
			seq uint64
			id  string
			op  int
		}
		if err := rows.Scan(&f.seq, &f.id, &f.op); err != nil {
			t.Fatal(err)
		}
		feed = append(feed, f)
	}
	rows.Close()
	for i, l := range listeners {
		got, ends := l.Got()
		var missing, repeated, disordered, wrong int
		seen := map[uint64]bool{}
		for j, m := range got {
			switch {
			case seen[m.GetSeq()]:
				repeated++
			case j > 0 && m.GetSeq() < got[j-1].GetSeq():
				disordered++
			}
			seen[m.GetSeq()] = true
			if k := int(m.GetSeq()) - 1; k < 0 || k >= len(feed) || feed[k].id != m.GetReservation().GetId() || feed[k].op != int(m.GetOp()) {
				wrong++
			}
		}
		for _, f := range feed {
			if !seen[f.seq] {
				missing++
			}
		}
		name := fmt.Sprintf("listener %d", i)
		report.must(name+": changes missing", missing)
		report.must(name+": changes repeated", repeated)
		report.must(name+": changes out of order", disordered)
		report.must(name+": changes unlike the stored one", wrong)
		report.info(name+": streams ended by", fmt.Sprint(ends))
	}

	// Change by change, what every listener heard against the calls and their answers. The
	// listeners subscribed after seq 0 of a new database: nothing came before.
	heard := make([][]*pb.ListenResponse, len(listeners))
	for i, l := range listeners {
		heard[i], _ = l.Got()
	}
	unlike := h.Feed.Check(0, heard...)
	for _, d := range unlike {
		t.Log("feed unlike the calls: " + d)
	}
	report.must("listeners' changes unlike the calls made and their answers (reservation, op, version)", len(unlike))
	for _, m := range h.OwnReadsMissed {
		t.Log("read-your-writes reply without its write: " + m)
	}
	report.must("reads with a write's consistency token (READ_YOUR_WRITES, on any replica) whose reply missed the write", len(h.OwnReadsMissed))
	report.info("reads with a write's token: answered / from memory / unanswered", fmt.Sprintf("%d / %d / %d", h.OwnReads, h.OwnReadsFromMemory, h.OwnReadsUnanswered))
	for _, r := range c.Replicas {
		if !r.Running() || strings.Contains(r.Log(), "panic") {
			report.must(r.Name+" crashed or panicked", 1)
		}
	}
	report.info("changes in the feed", fmt.Sprint(len(feed)))
	report.info("reservations acknowledged / cancelled / of unknown outcome", fmt.Sprintf("%d / %d / %d", len(h.Acked), len(h.Cancelled), len(h.Unknown)))
	methods := make([]string, 0, len(h.Codes))
	for m := range h.Codes {
		methods = append(methods, m)
	}
	sort.Strings(methods)
	for _, m := range methods {
		report.info("calls of "+m+" by code", codeString(h.Codes[m]))
	}
	return report
}

func codeString(m map[codes.Code]int) string {
	var parts []string
	for code, n := range m {
		parts = append(parts, fmt.Sprintf("%s %d", code, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// table is the report the suite prints.
type table struct {
	rows   [][3]string
	failed bool
}

func (t *table) must(name string, n int) {
	verdict := "ok"
	if n != 0 {
		verdict, t.failed = "FAIL", true
	}
	t.rows = append(t.rows, [3]string{name, fmt.Sprint(n), verdict})
}

func (t *table) info(name, v string) { t.rows = append(t.rows, [3]string{name, v, ""}) }

func (t *table) String() string {
	var b strings.Builder
	b.WriteString("| check | figure | must be 0 |\n| --- | --- | --- |\n")
	for _, r := range t.rows {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", r[0], r[1], r[2])
	}
	return b.String()
}
