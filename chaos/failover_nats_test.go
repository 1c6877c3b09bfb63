package chaos

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"reservation"
	rsvjs "reservation/jetstream"
	"reservation/jetstream/jstest"
	"reservation/repo"
)

// TestFailoverNATSExport is the export's divergence through a real lossy failover, the async
// scenario of TestFailover: three reservationd replicas on a MariaDB primary and its
// asynchronous replica (scripts/replication.sh) export to a 3-node JetStream cluster. The
// replica stops receiving, more changes are made and exported, then the primary is SIGKILLed
// and the replica promoted: the stream holds changes the new primary never had, and the
// service stamps other changes with their seqs (the exporters reach NATS again only then). The export must halt (recorded in
// reservation_exports, every replica's export health NOT_SERVING) with nothing published after
// the fork: every message of the stream is the old primary's change of that seq. Then
// reservationd export reset makes the stream again from the new primary, checked whole.
// It runs under make test-failover, which builds nats-server (scripts/nats.sh build).
func TestFailoverNATSExport(t *testing.T) {
	if os.Getenv("RESERVATION_TEST_FAILOVER") != "1" {
		t.Skip("needs a primary and a replica of its own: run make test-failover")
	}
	bin := os.Getenv("RESERVATION_TEST_NATS_SERVER")
	if bin == "" {
		t.Fatal("RESERVATION_TEST_NATS_SERVER is not set: make test-failover builds nats-server (scripts/nats.sh build) and sets it")
	}
	ctx := context.Background()
	env := replicationUp(t, ctx, "async")
	t.Cleanup(func() { exec.Command("bash", "../scripts/replication.sh", "stop").Run() })
	primaryAddr, replicaAddr := env["RSV_REPL_PRIMARY_ADDR"], env["RSV_REPL_REPLICA_ADDR"]
	primaryPid, _ := strconv.Atoi(env["RSV_REPL_PRIMARY_PID"])
	replica := openAdmin(t, replicaAddr)

	// Both hosts in every replica's DSN, the primary first, as in TestFailover.
	r := startNATSRun(t, bin, 0, Options{MySQLAddrs: []string{primaryAddr, replicaAddr}, AllHosts: true, Database: "failover"})
	r.write(natsChanges, func(*natsRun) {})
	r.waitExported()

	// The replica stops receiving: what the primary commits from here on is lost with it, and
	// the exporter publishes it.
	if _, err := replica.ExecContext(r.ctx, "STOP SLAVE IO_THREAD"); err != nil {
		t.Fatal(err)
	}
	r.write(1000, func(*natsRun) {})
	forkedAt := r.waitExported()
	old, err := repo.NewChanges(r.db).Read(r.ctx, 0, forkedAt, "", 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	// NATS is out of the exporters' reach (their proxies hold what they send) until the new
	// primary has stamped other changes with every exported seq: the export must then tell the
	// histories apart by the changes' fingerprints, not by a seq the database lacks.
	var releases []func()
	for _, ps := range r.proxies {
		for _, p := range ps {
			releases = append(releases, p.Hold())
		}
	}
	if err := syscall.Kill(primaryPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	promoteReplica(t, r.ctx, replica)
	r.useDatabase(replicaAddr)
	r.c.Admin.Close()
	r.c.Admin = replica
	_, promotedLast, err := repo.NewChanges(r.db).Bounds(r.ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("primary SIGKILLed with seqs 1 to %d exported; the promoted replica's feed ends at seq %d", forkedAt, promotedLast)
	if promotedLast >= forkedAt {
		t.Fatalf("the replica has every exported change (to seq %d): the failover lost nothing, nothing diverges", promotedLast)
	}

	// The service writes on the new primary: its seqs pass the stream's last one, each naming
	// another change.
	r.write(2000, func(*natsRun) {})
	if restamped := r.stampedFeed(); restamped[len(restamped)-1].Seq <= forkedAt {
		t.Fatalf("the new primary's feed ends at seq %d, not past the stream's %d", restamped[len(restamped)-1].Seq, forkedAt)
	}
	for _, release := range releases {
		release()
	}
	r.waitHalted()
	states, err := repo.ExportStates(r.ctx, r.db)
	if err != nil {
		t.Fatal(err)
	}
	if len(states) != 1 || states[0].Name != natsStream || states[0].Halted == "" {
		t.Errorf("reservation_exports on the new primary: %+v, want %s halted", states, natsStream)
	} else {
		t.Logf("reservation_exports: %s halted at seq %d: %s", states[0].Name, states[0].Seq, states[0].Halted)
	}

	newFeed := r.stampedFeed()
	fork := forkPoint(old, newFeed)
	if fork >= forkedAt || newFeed[len(newFeed)-1].Seq <= fork {
		t.Fatalf("the feeds agree to seq %d, the old one ends at %d, the new at %d: they did not fork", fork, forkedAt, newFeed[len(newFeed)-1].Seq)
	}
	msgs, err := jstest.StreamMsgs(r.ctx, r.js, natsStream)
	if err != nil {
		t.Fatal(err)
	}
	if bad := jstest.Check(msgs, old, rsvjs.DefaultSubjectPrefix); len(bad) > 0 {
		t.Fatalf("the stream is not the old primary's history (seqs 1 to %d; the new primary's differs after seq %d):\n%s", forkedAt, fork, strings.Join(bad, "\n"))
	}
	t.Logf("the new primary's feed agrees with the old to seq %d and goes on to seq %d; the stream holds the old history to seq %d and nothing else", fork, newFeed[len(newFeed)-1].Seq, forkedAt)

	r.statusAndReset()
	r.checkAll()
}

// stampedFeed waits until every change is stamped and returns the whole feed.
func (r *natsRun) stampedFeed() []*reservation.Change {
	changes := repo.NewChanges(r.db)
	r.waitStamped(changes)
	feed, err := changes.Read(r.ctx, 0, 1<<62, "", 1<<30)
	if err != nil {
		r.t.Fatal(err)
	}
	return feed
}

func (r *natsRun) waitStamped(changes *repo.Changes) {
	for {
		oldest, _, err := changes.Unstamped(r.ctx)
		if err == nil && oldest == 0 {
			return
		}
		if r.ctx.Err() != nil {
			r.t.Fatalf("changes never stamped: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// forkPoint is the last seq up to which feeds a and b (each from seq 1, in order) hold the same
// changes.
func forkPoint(a, b []*reservation.Change) uint64 {
	var seq uint64
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i].Seq != b[i].Seq || a[i].Fingerprint() != b[i].Fingerprint() {
			break
		}
		seq = a[i].Seq
	}
	return seq
}
