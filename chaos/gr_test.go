package chaos

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"
	"google.golang.org/grpc/codes"

	"reservation/lock/locktest"
)

// The Group Replication runs: three reservationd replicas on the 3-member MySQL 9.7 group of
// scripts/mysqlgr.sh, under the suite's checks. Single-primary: every replica is given every
// member in its DSN and its failover connector follows the primary; the primary is SIGKILLed,
// switched over, and leaves and rejoins, under load. Multi-primary: one replica per member,
// where concurrent writes to one resource on two members meet in the group's certification.
// Skipped unless RESERVATION_TEST_GR_DSNS is set; `make test-gr` sets it.

// grParams make an admin read wait until its member applied every transaction the group
// committed before it, so that the checks read what the group holds from any member.
var grParams = map[string]string{"group_replication_consistency": "'BEFORE'"}

// grChroot is where scripts/mysqlgr.sh's members run: their pid files are under it.
const grChroot = "../.local/mysql97/root"

func grDSNs(t *testing.T) []string {
	t.Helper()
	v := os.Getenv("RESERVATION_TEST_GR_DSNS")
	if v == "" {
		t.Skip("RESERVATION_TEST_GR_DSNS is not set: run `make test-gr` (scripts/mysqlgr.sh starts a 3-member group)")
	}
	dsns := strings.Split(v, ",")
	if len(dsns) != 3 {
		t.Fatalf("RESERVATION_TEST_GR_DSNS names %d members, want 3", len(dsns))
	}
	return dsns
}

// grUp runs scripts/mysqlgr.sh MODE: it starts the members that are down, has every member
// rejoin, and switches the group to MODE.
func grUp(ctx context.Context, mode string) error {
	cmd := exec.CommandContext(ctx, "bash", "../scripts/mysqlgr.sh", mode)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("scripts/mysqlgr.sh %s: %w\n%s", mode, err, stderr.String())
	}
	return nil
}

// grMember is one member of the group; its galeraNode gives it kill and signal.
type grMember struct {
	*galeraNode
	uuid string
}

func grMembers(ctx context.Context, t *testing.T, dsns []string) []*grMember {
	t.Helper()
	var ms []*grMember
	for i, dsn := range dsns {
		cfg, err := mysql.ParseDSN(dsn)
		if err != nil {
			t.Fatalf("parse %q: %v", dsn, err)
		}
		m := &grMember{galeraNode: &galeraNode{name: fmt.Sprintf("member%d", i+1), addr: cfg.Addr}}
		db := m.open()
		err = db.QueryRowContext(ctx, "SELECT @@pid_file, @@log_error, @@server_uuid").Scan(&m.pidFile, &m.logFile, &m.uuid)
		db.Close()
		if err != nil {
			t.Fatalf("Group Replication %s at %s: %v (is scripts/mysqlgr.sh's group up?)", m.name, m.addr, err)
		}
		m.pidFile = filepath.Join(grChroot, m.pidFile) // mysqld names it as seen in the chroot
		m.logFile = filepath.Join(grChroot, m.logFile)
		ms = append(ms, m)
	}
	return ms
}

func (m *grMember) open() *sql.DB {
	db, _ := sql.Open("mysql", "root@tcp("+m.addr+")/?timeout=1s&readTimeout=3s&writeTimeout=3s") // only parse errors
	return db
}

// exec runs an administrative statement; STOP GROUP_REPLICATION on a primary under load
// takes seconds (it waits for the transactions under way), more than open's read timeout.
func (m *grMember) exec(ctx context.Context, q string) error {
	db, err := sql.Open("mysql", "root@tcp("+m.addr+")/?timeout=1s&readTimeout=2m")
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.ExecContext(ctx, q)
	return err
}

// view is what the member says of itself: its state, its role, whether it takes writes.
func (m *grMember) view(ctx context.Context) (state, role string, writable bool, err error) {
	db := m.open()
	defer db.Close()
	var sro int
	err = db.QueryRowContext(ctx, `SELECT MEMBER_STATE, MEMBER_ROLE, @@super_read_only FROM performance_schema.replication_group_members
		WHERE MEMBER_ID = @@server_uuid`).Scan(&state, &role, &sro)
	return state, role, sro == 0, err
}

// grPrimary returns the member that is ONLINE, PRIMARY and writable, or -1.
func grPrimary(ctx context.Context, ms []*grMember) int {
	for i, m := range ms {
		if state, role, w, err := m.view(ctx); err == nil && state == "ONLINE" && role == "PRIMARY" && w {
			return i
		}
	}
	return -1
}

// waitPrimary polls every 50 ms until a member other than not is a writable primary, and
// returns it and when it was seen so.
func waitPrimary(ctx context.Context, ms []*grMember, not int) (int, time.Time, error) {
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		p := grPrimary(cctx, ms)
		cancel()
		if p >= 0 && p != not {
			return p, time.Now(), nil
		}
		select {
		case <-ctx.Done():
			return -1, time.Time{}, fmt.Errorf("no new writable primary: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitOnline waits until every member is ONLINE.
func waitOnline(ctx context.Context, ms []*grMember) error {
	for {
		var last string
		ok := true
		for _, m := range ms {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			state, _, _, err := m.view(cctx)
			cancel()
			if err != nil || state != "ONLINE" {
				ok, last = false, fmt.Sprintf("%s: %q, %v", m.name, state, err)
				break
			}
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("group not ONLINE: %s", last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// firstSuccessAfter waits until a call acknowledged after since is in h, and returns how long
// after since it came.
func firstSuccessAfter(ctx context.Context, h *History, since time.Time) (time.Duration, error) {
	for {
		h.mu.Lock()
		n := len(h.Successes)
		var last time.Time
		if n > 0 {
			last = h.Successes[n-1]
		}
		h.mu.Unlock()
		if last.After(since) {
			h.mu.Lock()
			first := last
			for i := n - 1; i >= 0 && h.Successes[i].After(since); i-- {
				first = h.Successes[i]
			}
			h.mu.Unlock()
			return first.Sub(since), nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("no write succeeded after %s: %w", since.Format(time.TimeOnly), ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// grFault breaks the group under load and mends it; it returns what it did and measured.
type grFault struct {
	name string
	run  func(ctx context.Context, ms []*grMember, h *History) (string, error)
}

// resumeAfter waits for, and describes, the first call acknowledged more than 100 ms after
// the fault began (one acknowledged sooner most likely committed before it). A rough figure,
// there to wait for writes to resume before the fault is mended; the report's longest pause
// in successes around the fault is the one to quote.
func resumeAfter(ctx context.Context, h *History, began time.Time) string {
	d, err := firstSuccessAfter(ctx, h, began.Add(100*time.Millisecond))
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("the first write acknowledged %s after it", (d + 100*time.Millisecond).Round(100*time.Millisecond))
}

var grSingleFaults = []grFault{
	{"primary SIGKILLed, restarted and rejoined", func(ctx context.Context, ms []*grMember, h *History) (string, error) {
		p := grPrimary(ctx, ms)
		if p < 0 {
			return "", fmt.Errorf("no writable primary before the kill")
		}
		began := time.Now()
		if err := ms[p].kill(ctx); err != nil {
			return "", err
		}
		next, at, err := waitPrimary(ctx, ms, p)
		if err != nil {
			return "", err
		}
		resumed := resumeAfter(ctx, h, began)
		restart := time.Now()
		if err := grUp(ctx, "single"); err != nil {
			return "", err
		}
		return fmt.Sprintf("%s killed; %s a writable primary %s after the kill; %s; %s restarted and ONLINE again %s after its restart began",
			ms[p].name, ms[next].name, at.Sub(began).Round(100*time.Millisecond), resumed, ms[p].name, time.Since(restart).Round(100*time.Millisecond)), nil
	}},
	{"switchover: group_replication_set_as_primary to a secondary", func(ctx context.Context, ms []*grMember, h *History) (string, error) {
		p := grPrimary(ctx, ms)
		if p < 0 {
			return "", fmt.Errorf("no writable primary before the switchover")
		}
		to := (p + 1) % len(ms)
		began := time.Now()
		if err := ms[p].exec(ctx, "SELECT group_replication_set_as_primary('"+ms[to].uuid+"')"); err != nil {
			return "", fmt.Errorf("set_as_primary(%s): %w", ms[to].name, err)
		}
		done := time.Since(began)
		if _, _, err := waitPrimary(ctx, ms, p); err != nil {
			return "", err
		}
		return fmt.Sprintf("%s to %s; the function returned after %s; %s", ms[p].name, ms[to].name, done.Round(100*time.Millisecond), resumeAfter(ctx, h, began)), nil
	}},
	{"primary leaves (STOP GROUP_REPLICATION), rejoins after 2s", func(ctx context.Context, ms []*grMember, h *History) (string, error) {
		p := grPrimary(ctx, ms)
		if p < 0 {
			return "", fmt.Errorf("no writable primary before it leaves")
		}
		began := time.Now()
		if err := ms[p].exec(ctx, "STOP GROUP_REPLICATION"); err != nil {
			return "", err
		}
		next, at, err := waitPrimary(ctx, ms, p)
		if err != nil {
			return "", err
		}
		resumed := resumeAfter(ctx, h, began)
		time.Sleep(2 * time.Second)
		rejoin := time.Now()
		if err := ms[p].exec(ctx, "START GROUP_REPLICATION"); err != nil {
			return "", err
		}
		if err := waitOnline(ctx, ms); err != nil {
			return "", err
		}
		return fmt.Sprintf("%s left; %s a writable primary %s after; %s; %s ONLINE again %s after START GROUP_REPLICATION",
			ms[p].name, ms[next].name, at.Sub(began).Round(100*time.Millisecond), resumed, ms[p].name, time.Since(rejoin).Round(100*time.Millisecond)), nil
	}},
}

// grRunOptions shape one Group Replication run.
type grRunOptions struct {
	mode       string // single or multi
	lock       string // the replicas' --lock
	redisDown  bool   // the replicas' Redis is an address nothing listens on
	faults     []grFault
	wantErrors bool // the run must see certification conflicts (multi-primary, local lock)
}

// runGR runs the load against three replicas on the group in opts.mode, injecting the faults
// one after another (or none: a plain run of galeraRun), then checks everything and fails t on
// a must-be-zero figure that is not zero.
func runGR(t *testing.T, opts grRunOptions) {
	dsns := grDSNs(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	// Whatever an earlier run broke is mended, and the group is in the mode wanted.
	if err := grUp(ctx, opts.mode); err != nil {
		t.Fatal(err)
	}
	ms := grMembers(ctx, t, dsns)
	addrs := make([]string, len(ms))
	for i, m := range ms {
		addrs[i] = m.addr
	}
	if opts.mode == "single" {
		// The admin connection creates the database: it goes to the primary (listed first).
		p := grPrimary(ctx, ms)
		if p < 0 {
			t.Fatal("no writable primary")
		}
		addrs[0], addrs[p] = addrs[p], addrs[0]
	}
	b := make([]byte, 6)
	rand.Read(b)
	var env []string
	if opts.redisDown {
		env = append(env, "RESERVATION_REDIS_ADDR="+locktest.ClosedAddr(t))
	}
	c, err := NewCluster(ctx, Options{
		Dir: t.TempDir(), Replicas: len(ms), LockTTL: galeraLockTTL, MySQLAddrs: addrs,
		AllHosts: opts.mode == "single", AdminParams: "group_replication_consistency=%27BEFORE%27",
		Database: "rsvgr_" + hex.EncodeToString(b), Lock: opts.lock, Env: env,
	})
	t.Cleanup(c.Close)
	if err != nil {
		t.Fatal(err)
	}
	conflictsBefore := grConflicts(ctx, t, ms)

	h := newHistory()
	load, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := range galeraWriters {
		wg.Go(func() { Writer(load, i, c.Replicas, h, galeraResources) })
	}
	var lwg sync.WaitGroup
	defer lwg.Wait()
	listenCtx, stopListeners := context.WithCancel(ctx)
	defer stopListeners()
	listeners := make([]*Listener, len(c.Replicas))
	for i := range listeners {
		listeners[i] = NewListener()
		lwg.Go(func() { listeners[i].Run(listenCtx, c.Replicas[i:i+1], uint64(i)) })
	}

	type injected struct {
		name, what string
		start, end time.Time
	}
	var done []injected
	began := time.Now()
	if len(opts.faults) == 0 {
		time.Sleep(galeraRun)
	} else {
		time.Sleep(2 * time.Second)
		for _, f := range opts.faults {
			start := time.Now()
			what, err := f.run(ctx, ms, h)
			if err != nil {
				stopLoad()
				wg.Wait()
				t.Fatalf("%s: %v", f.name, err)
			}
			done = append(done, injected{f.name, what, start, time.Now()})
			t.Logf("%s: %s", f.name, what)
			time.Sleep(settle)
		}
	}
	stopLoad()
	wg.Wait()
	stopped := time.Now()
	if len(opts.faults) > 0 {
		wctx, wcancel := context.WithTimeout(ctx, 2*time.Minute)
		err := waitOnline(wctx, ms)
		wcancel()
		if err != nil {
			t.Fatal(err)
		}
	}

	report := checkPromise(ctx, t, c, h, listeners, stopListeners, &lwg, stopped)
	compareNodes(ctx, t, c, dsns, grParams, report)
	internal := 0
	for _, byCode := range h.Codes {
		internal += byCode[codes.Internal]
	}
	// A primary that is down or demoted, and a transaction that lost certification, make a
	// call UNAVAILABLE or ABORTED (after the store's retries), never INTERNAL.
	report.must("calls answered INTERNAL", internal)
	conflicts := grConflicts(ctx, t, ms) - conflictsBefore
	if opts.wantErrors && conflicts == 0 {
		report.must("certification conflicts detected by the group (must be > 0 here: the run would not test them)", -1)
	}
	report.info("certification conflicts detected by the group", fmt.Sprint(conflicts))
	if n := bypassed(t, c); opts.redisDown {
		// Every write went ahead on the database guard alone: the run tests that path.
		if n == 0 {
			report.must("writes that went ahead without the lock (must be > 0 with Redis unreachable)", -1)
		}
		report.info("writes that went ahead without the lock", fmt.Sprint(n))
	}
	report.info("mode / lock", fmt.Sprintf("%s-primary / %s (Redis unreachable: %v)", opts.mode, opts.lock, opts.redisDown))
	report.info("load", fmt.Sprintf("%d writers on %d resources for %s", galeraWriters, galeraResources, stopped.Sub(began).Round(100*time.Millisecond)))
	for _, f := range done {
		failed, stall := h.During(f.start, f.end.Add(settle))
		report.info("fault: "+f.name, fmt.Sprintf("%s; lasted %s; %d calls failed; longest pause in successes %s",
			f.what, f.end.Sub(f.start).Round(time.Millisecond), failed, stall.Round(time.Millisecond)))
	}
	for _, r := range c.Replicas {
		if errs := internalErrors(r.Log()); errs != "" {
			report.info(r.Name+": internal errors logged", errs)
		}
	}
	if len(h.Acked) == 0 {
		report.must("reservations acknowledged (none: the replicas never wrote)", -1)
	}
	t.Log("\n" + report.String())
	if report.failed {
		t.Fatal("a must-be-zero figure is not zero")
	}
}

// grConflicts is the group's count of certification conflicts: each member certifies every
// transaction, so one member's count is the group's; the largest is taken, as a member that
// restarted counts from 0.
func grConflicts(ctx context.Context, t *testing.T, ms []*grMember) int {
	t.Helper()
	best := 0
	for _, m := range ms {
		db := m.open()
		var n int
		err := db.QueryRowContext(ctx, `SELECT COUNT_CONFLICTS_DETECTED FROM performance_schema.replication_group_member_stats
			WHERE MEMBER_ID = @@server_uuid`).Scan(&n)
		db.Close()
		if err == nil {
			best = max(best, n)
		}
	}
	return best
}

// TestGroupReplicationSinglePrimary: 32 writers on 3 hot resources through three replicas that
// are each given every member, the Redis lock up and unreachable; then the same load while the
// primary is SIGKILLed (and restarted: it rejoins), switched over, and leaves and rejoins.
func TestGroupReplicationSinglePrimary(t *testing.T) {
	grDSNs(t)
	t.Run("redis", func(t *testing.T) { runGR(t, grRunOptions{mode: "single", lock: "redis"}) })
	t.Run("redis unreachable", func(t *testing.T) { runGR(t, grRunOptions{mode: "single", lock: "redis", redisDown: true}) })
	t.Run("faults", func(t *testing.T) { runGR(t, grRunOptions{mode: "single", lock: "redis", faults: grSingleFaults}) })
}

// TestGroupReplicationMultiPrimary: one replica per member, every member taking writes. With
// each replica's local lock, only the database guards across replicas: concurrent writes to a
// resource on two members conflict in the group's certification, and the loser must be retried
// (like a deadlock), never answered INTERNAL.
func TestGroupReplicationMultiPrimary(t *testing.T) {
	grDSNs(t)
	t.Run("local", func(t *testing.T) { runGR(t, grRunOptions{mode: "multi", lock: "local", wantErrors: true}) })
	t.Run("redis", func(t *testing.T) { runGR(t, grRunOptions{mode: "multi", lock: "redis"}) })
}

// TestGroupReplicationBatchProbe asks of a multi-primary group what
// TestGaleraBatchSplitByBruteForceAbort asks of Galera: member 1's transaction holds a row FOR
// UPDATE and sends INSERT t; DO SLEEP(1); INSERT t2; UPDATE hot as one multi-statement batch
// while member 2 updates that row, so that applying member 2's transaction on member 1 aborts
// member 1's in the middle of the batch. Does a later statement of the batch then commit
// outside the transaction? The service's choice for Group Replication (batches sent together,
// as on one server) rests on the answer: every run must be clean, all or nothing.
func TestGroupReplicationBatchProbe(t *testing.T) {
	dsns := grDSNs(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := grUp(ctx, "multi"); err != nil {
		t.Fatal(err)
	}
	dbName := galeraDatabase(t, ctx, dsns[0])
	other, err := sql.Open("mysql", withDB(t, dsns[1], dbName, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	for _, q := range []string{
		"CREATE TABLE hot (id INT PRIMARY KEY, v INT NOT NULL)",
		"CREATE TABLE t (id INT PRIMARY KEY)",
		"CREATE TABLE t2 (id INT PRIMARY KEY)",
		"INSERT INTO hot VALUES (1, 0)",
	} {
		if _, err := other.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	raw, err := sqlx.Open("mysql", withDB(t, dsns[0], dbName, map[string]string{"multiStatements": "true"}))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	const syncRead = "SET SESSION group_replication_consistency = 'BEFORE'"
	aborted := 0
	for i := range 3 {
		out := runProbe(ctx, t, raw, other, syncRead, func(tx *sqlx.Tx) error {
			_, err := tx.ExecContext(ctx, probeBatch)
			return err
		})
		t.Logf("multiStatements batch, run %d: %s", i+1, out)
		if !out.clean() {
			t.Errorf("run %d: the batch was split: %s", i+1, out)
		}
		if out.execErr != nil || out.commitErr != nil {
			aborted++
		}
	}
	if aborted == 0 {
		t.Errorf("member 2's update never aborted member 1's transaction in 3 runs: the probe tested nothing")
	}
}
