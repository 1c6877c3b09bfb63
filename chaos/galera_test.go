package chaos

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"google.golang.org/grpc/codes"
)

// The Galera runs: three reservationd replicas, one per node of the cluster scripts/galera.sh
// starts, under the suite's checks. Skipped unless RESERVATION_TEST_GALERA_DSNS is set; `make
// test` sets it through `make test-galera`.

const (
	galeraWriters   = 32 // the load: 32 clients on 3 resources for 15 s
	galeraResources = 3
	galeraRun       = 15 * time.Second
	// The replicas' Redis lock TTL: the production default (no Redis fault is injected here).
	galeraLockTTL = 30 * time.Second
)

// galeraNode is one node of the test cluster: its SQL address and the files galera.sh keeps.
type galeraNode struct {
	name    string
	addr    string
	pidFile string
	logFile string
}

func galeraNodes(ctx context.Context, t *testing.T, dsns []string) []*galeraNode {
	t.Helper()
	var nodes []*galeraNode
	for i, dsn := range dsns {
		cfg, err := mysql.ParseDSN(dsn)
		if err != nil {
			t.Fatalf("parse %q: %v", dsn, err)
		}
		n := &galeraNode{name: fmt.Sprintf("node%d", i+1), addr: cfg.Addr}
		db, err := sql.Open("mysql", dsn)
		if err != nil {
			t.Fatal(err)
		}
		err = db.QueryRowContext(ctx, "SELECT @@pid_file, @@log_error").Scan(&n.pidFile, &n.logFile)
		db.Close()
		if err != nil {
			t.Fatalf("Galera %s at %s: %v (is scripts/galera.sh's cluster up?)", n.name, n.addr, err)
		}
		nodes = append(nodes, n)
	}
	return nodes
}

func (n *galeraNode) pid() (int, error) {
	b, err := os.ReadFile(n.pidFile)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", n.name, err)
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

func (n *galeraNode) signal(sig syscall.Signal) error {
	pid, err := n.pid()
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, sig); err != nil {
		return fmt.Errorf("%s: signal %s to pid %d: %w", n.name, sig, pid, err)
	}
	return nil
}

// kill SIGKILLs the node's mariadbd and waits until its port refuses connections.
func (n *galeraNode) kill(ctx context.Context) error {
	if err := n.signal(syscall.SIGKILL); err != nil {
		return err
	}
	for {
		c, err := net.DialTimeout("tcp", n.addr, 200*time.Millisecond)
		if err != nil {
			return nil
		}
		c.Close()
		if ctx.Err() != nil {
			return fmt.Errorf("%s still answers after SIGKILL: %w", n.name, ctx.Err())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// state returns the node's wsrep_local_state_comment and wsrep_cluster_size.
func (n *galeraNode) state(ctx context.Context) (string, int, error) {
	db, err := sql.Open("mysql", "root@tcp("+n.addr+")/?timeout=1s&readTimeout=2s")
	if err != nil {
		return "", 0, err
	}
	defer db.Close()
	var name, comment, size string
	if err := db.QueryRowContext(ctx, "SHOW STATUS LIKE 'wsrep_local_state_comment'").Scan(&name, &comment); err != nil {
		return "", 0, err
	}
	if err := db.QueryRowContext(ctx, "SHOW STATUS LIKE 'wsrep_cluster_size'").Scan(&name, &size); err != nil {
		return "", 0, err
	}
	sz, _ := strconv.Atoi(size)
	return comment, sz, nil
}

// waitSynced waits until every node is Synced in a cluster of all of them.
func waitSynced(ctx context.Context, nodes []*galeraNode) error {
	for {
		ok := true
		var last string
		for _, n := range nodes {
			comment, size, err := n.state(ctx)
			if err != nil || comment != "Synced" || size != len(nodes) {
				ok, last = false, fmt.Sprintf("%s: %s, cluster size %d, err %v", n.name, comment, size, err)
				break
			}
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("Galera cluster not Synced: %s", last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitStable waits until every node has been Synced in a cluster of all of them for the
// whole of settleFor: a node that was paused may look Synced at first and be evicted (and
// rejoin) a few seconds later, once the others' suspect timeout has passed.
func waitStable(ctx context.Context, nodes []*galeraNode, settleFor time.Duration) error {
	for {
		if err := waitSynced(ctx, nodes); err != nil {
			return err
		}
		since := time.Now()
		stable := true
		for time.Since(since) < settleFor && stable {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(250 * time.Millisecond):
			}
			for _, n := range nodes {
				comment, size, err := n.state(ctx)
				if err != nil || comment != "Synced" || size != len(nodes) {
					stable = false
					break
				}
			}
		}
		if stable {
			return nil
		}
	}
}

// galeraSettle is how long the cluster must stay Synced before a fault counts as mended: past
// Galera's evs.suspect_timeout (5 s), after which an unresponsive node is evicted.
const galeraSettle = 6 * time.Second

// startNodes runs scripts/galera.sh, which starts every node that is down and waits until
// all three are Synced. It returns the script's log lines.
func startNodes(ctx context.Context) (string, error) {
	cmd := exec.CommandContext(ctx, "bash", "../scripts/galera.sh")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return stderr.String(), fmt.Errorf("scripts/galera.sh: %w\n%s", err, stderr.String())
	}
	return stderr.String(), nil
}

// joinedBy says how the node last joined, from its log: by IST (incremental, from another
// node's gcache) or by a full SST.
func (n *galeraNode) joinedBy(logFrom int64) string {
	b, err := os.ReadFile(n.logFile)
	if err != nil || int64(len(b)) < logFrom {
		return "unknown"
	}
	tail := string(b[logFrom:])
	// The rsync script runs for both; it copies data only for an SST.
	switch {
	case strings.Contains(tail, "rsync SST completed on joiner"):
		return "SST"
	case strings.Contains(tail, "IST received"):
		return "IST"
	}
	return "unknown"
}

func (n *galeraNode) logSize() int64 {
	fi, err := os.Stat(n.logFile)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// galeraFault breaks a node of the cluster and mends it; leaderNode is the node under the
// feed leader's replica when the fault begins.
type galeraFault struct {
	name string
	run  func(ctx context.Context, nodes []*galeraNode, leaderNode int) (string, error)
}

var galeraFaults = []galeraFault{
	{"Galera node under the feed leader SIGKILLed, restarted after 2s (rejoins)", func(ctx context.Context, nodes []*galeraNode, leader int) (string, error) {
		n := nodes[leader]
		from := n.logSize()
		if err := n.kill(ctx); err != nil {
			return "", err
		}
		time.Sleep(2 * time.Second)
		began := time.Now()
		if _, err := startNodes(ctx); err != nil {
			return "", err
		}
		synced := time.Since(began)
		sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		if err := waitStable(sctx, nodes, galeraSettle); err != nil {
			return "", err
		}
		return fmt.Sprintf("%s back and Synced %s after its restart, by %s", n.name, synced.Round(100*time.Millisecond), n.joinedBy(from)), nil
	}},
	{"Galera node under the feed leader SIGSTOPped 4s, then SIGCONT (it may be evicted and rejoin)", func(ctx context.Context, nodes []*galeraNode, leader int) (string, error) {
		n := nodes[leader]
		if err := n.signal(syscall.SIGSTOP); err != nil {
			return "", err
		}
		time.Sleep(4 * time.Second)
		if err := n.signal(syscall.SIGCONT); err != nil {
			return "", err
		}
		began := time.Now()
		from := n.logSize()
		sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		if err := waitStable(sctx, nodes, galeraSettle); err != nil {
			return "", err
		}
		rejoined := "stayed in the cluster"
		if how := n.joinedBy(from); how != "unknown" {
			rejoined = "was evicted and rejoined by " + how
		}
		return fmt.Sprintf("%s resumed and %s; all Synced for %s by %s after SIGCONT", n.name, rejoined, galeraSettle,
			time.Since(began).Round(100*time.Millisecond)), nil
	}},
}

// galeraRunOptions shape one Galera run.
type galeraRunOptions struct {
	lock   string // the replicas' --lock
	faults []galeraFault
}

// runGalera runs the load against three replicas, one per node, injecting opts.faults one
// after another (or none: a plain run of galeraRun), then checks everything and fails t on a
// must-be-zero figure that is not zero.
func runGalera(t *testing.T, opts galeraRunOptions) {
	dsns := galeraDSNs(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	nodes := galeraNodes(ctx, t, dsns)
	sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
	err := waitSynced(sctx, nodes)
	scancel()
	if err != nil {
		// A node a previous run broke: galera.sh starts what is down.
		t.Logf("%v; running scripts/galera.sh", err)
		if _, err := startNodes(ctx); err != nil {
			t.Fatal(err)
		}
	}
	addrs := make([]string, len(nodes))
	for i, n := range nodes {
		addrs[i] = n.addr
	}
	b := make([]byte, 6)
	rand.Read(b)
	c, err := NewCluster(ctx, Options{
		Dir: t.TempDir(), Replicas: len(nodes), LockTTL: galeraLockTTL, MySQLAddrs: addrs,
		// The checks read through node 1 what the others committed.
		AdminParams: "wsrep_sync_wait=1", Database: "rsvgalera_" + hex.EncodeToString(b), Lock: opts.lock,
	})
	t.Cleanup(c.Close)
	if err != nil {
		t.Fatal(err)
	}

	h := newHistory()
	load, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := range galeraWriters {
		wg.Go(func() { Writer(load, i, c.Replicas, h, galeraResources) })
	}
	// One listener per replica, each only ever on its own: every replica must serve the same feed.
	var lwg sync.WaitGroup
	defer lwg.Wait() // after stopListeners, on every path
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
		time.Sleep(2 * time.Second) // load before the first fault
		for _, f := range opts.faults {
			leader, err := c.Leader(ctx)
			if err != nil || leader < 0 {
				leader = 0 // no leader this moment (a takeover under way): break node 1
			}
			start := time.Now()
			what, err := f.run(ctx, nodes, leader%len(nodes))
			if err != nil {
				stopLoad()
				wg.Wait()
				t.Fatalf("%s: %v", f.name, err)
			}
			done = append(done, injected{f.name, what, start, time.Now()})
			time.Sleep(settle) // let it recover under load
		}
	}
	stopLoad()
	wg.Wait()
	stopped := time.Now()
	if len(opts.faults) > 0 {
		// The checks read through node 1, which a fault may have left rejoining.
		sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		err := waitStable(sctx, nodes, galeraSettle)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}

	report := checkPromise(ctx, t, c, h, listeners, stopListeners, &lwg, stopped)
	compareNodes(ctx, t, c, dsns, map[string]string{"wsrep_sync_wait": "1"}, report)
	internal := 0
	for _, byCode := range h.Codes {
		internal += byCode[codes.Internal]
	}
	// A node that is down, joining or paused makes calls UNAVAILABLE or ABORTED, never INTERNAL.
	report.must("calls answered INTERNAL", internal)
	report.info("lock", opts.lock)
	report.info("load", fmt.Sprintf("%d writers on %d resources for %s", galeraWriters, galeraResources, stopped.Sub(began).Round(100*time.Millisecond)))
	for _, f := range done {
		failed, stall := h.During(f.start, f.end.Add(settle))
		report.info("fault: "+f.name, fmt.Sprintf("%s; lasted %s; %d calls failed; longest pause in successes %s",
			f.what, f.end.Sub(f.start).Round(time.Millisecond), failed, stall.Round(time.Millisecond)))
	}
	for _, r := range c.Replicas {
		log := r.Log()
		report.info(r.Name+": 'gave up leading' logged", fmt.Sprint(strings.Count(log, "gave up leading")))
		if errs := internalErrors(log); errs != "" {
			report.info(r.Name+": internal errors logged", errs)
		}
	}
	t.Log("\n" + report.String())
	if report.failed {
		t.Fatal("a must-be-zero figure is not zero")
	}
}

// compareNodes checks that every node stores the same feed and the same reservations.
// params are the sessions' settings for a read that sees every commit of the cluster.
func compareNodes(ctx context.Context, t *testing.T, c *Cluster, dsns []string, params map[string]string, report *table) {
	t.Helper()
	read := func(dsn string) (feed, rows []string, err error) {
		db, err := sql.Open("mysql", withDB(t, dsn, c.Database, params))
		if err != nil {
			return nil, nil, err
		}
		defer db.Close()
		lines := func(q string) ([]string, error) {
			rs, err := db.QueryContext(ctx, q)
			if err != nil {
				return nil, err
			}
			defer rs.Close()
			var out []string
			for rs.Next() {
				var s string
				if err := rs.Scan(&s); err != nil {
					return nil, err
				}
				out = append(out, s)
			}
			return out, rs.Err()
		}
		if feed, err = lines("SELECT CONCAT(seq, ' ', reservation_id, ' ', op) FROM reservation_changes ORDER BY seq"); err != nil {
			return nil, nil, err
		}
		rows, err = lines("SELECT CONCAT(id, ' ', resource_id, ' ', start_at, ' ', end_at) FROM reservations ORDER BY id")
		return feed, rows, err
	}
	firstFeed, firstRows, err := read(dsns[0])
	if err != nil {
		t.Fatalf("read node1: %v", err)
	}
	for i, dsn := range dsns[1:] {
		feed, rows, err := read(dsn)
		if err != nil {
			t.Fatalf("read node%d: %v", i+2, err)
		}
		report.must(fmt.Sprintf("node%d: stored feed rows unlike node1's", i+2), differ(firstFeed, feed))
		report.must(fmt.Sprintf("node%d: reservations unlike node1's", i+2), differ(firstRows, rows))
	}
}

// differ counts the positions where two sorted lists differ, and the length difference.
func differ(a, b []string) int {
	n := max(len(a), len(b)) - min(len(a), len(b))
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			n++
		}
	}
	return n
}

// TestGaleraConcurrency is the run: 32 writers on 3 hot resources for 15 s through
// three replicas, one per Galera node, with the Redis lock and with each replica's local lock
// (the database alone guarding across replicas).
func TestGaleraConcurrency(t *testing.T) {
	galeraDSNs(t)
	for _, lock := range []string{"redis", "local"} {
		t.Run(lock, func(t *testing.T) { runGalera(t, galeraRunOptions{lock: lock}) })
	}
}

// TestGaleraChaos injects node faults under the same load: a node SIGKILLed and restarted
// (it rejoins, by IST when the others' gcache still holds what it missed), and a node paused.
// Each fault hits the node under the feed leader. --lock local: the database alone guards.
func TestGaleraChaos(t *testing.T) {
	galeraDSNs(t)
	runGalera(t, galeraRunOptions{lock: "local", faults: galeraFaults})
}

// internalErrors sums up the "internal error" lines of a replica's log by message, with the
// numbers (ids, seqs) taken out.
func internalErrors(log string) string {
	digits := regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f-]{27}|[0-9]+`)
	byMsg := map[string]int{}
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, `"msg":"internal error"`) {
			continue
		}
		_, msg, _ := strings.Cut(line, `"err":`)
		byMsg[digits.ReplaceAllString(msg, "N")]++
	}
	var parts []string
	for msg, n := range byMsg {
		parts = append(parts, fmt.Sprintf("%d× %s", n, msg))
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}
