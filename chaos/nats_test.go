package chaos

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	rsvjs "reservation/jetstream"
	"reservation/jetstream/jstest"
	pb "reservation/proto/reservation/v1"
	"reservation/repo"
)

// natsChanges is how many changes each run writes at least.
const natsChanges = 10_000

// natsStream is the runs' stream: the production default name and subject prefix.
const natsStream = rsvjs.DefaultStream

// natsRun is one run: a 3-node JetStream cluster, three reservationd replicas exporting to it
// (production defaults but for the addresses), each reaching each NATS node through a proxy of
// its own, and the writers.
type natsRun struct {
	t       *testing.T
	dir     string
	ctx     context.Context
	nats    *NATS
	proxies [][]*Proxy // [replica][node]
	c       *Cluster
	db      *sqlx.DB
	js      jetstream.JetStream
	rounds  int // calls of write so far: each writes other slots under other request ids

	// duplicates and wrongSeq are the replicas' counters of those paths, as scraped in this run.
	duplicates, wrongSeq int64
}

// suiteCounts are the duplicate and wrong-sequence paths taken across the runs.
var suiteCounts struct{ duplicates, wrongSeq atomic.Int64 }

// TestNATSExport runs the export under each fault in a run of its own, and checks every run:
// the stream holds each stored change exactly once, stream sequence i is feed seq i with the
// change's fingerprint, and a consumer of the stream records what Listen delivers.
func TestNATSExport(t *testing.T) {
	bin := os.Getenv("RESERVATION_TEST_NATS_SERVER")
	if bin == "" {
		t.Skip("RESERVATION_TEST_NATS_SERVER is not set: `make test-nats` builds nats-server (scripts/nats.sh) and runs these runs")
	}
	faults := []struct {
		name       string
		duplicates time.Duration // the stream's duplicate window; 0: the exporter's default (2m)
		fault      func(r *natsRun)
		// wrongSeq: the run must see the stream refuse a publish for a wrong last sequence.
		wrongSeq bool
	}{
		{name: "kill-exporter", fault: (*natsRun).killExporter},
		{name: "kill-stream-leader", fault: (*natsRun).killStreamLeader},
		{name: "cut-exporter-connection", fault: (*natsRun).cutExporter},
		// The pause must outlast the duplicate window: 2s here rather than 2 minutes, so that
		// the run stays short. The other runs keep the default window.
		{name: "pause-exporter-past-duplicate-window", duplicates: 2 * time.Second, fault: (*natsRun).pauseExporter},
		// The held publishes must outlast the duplicate window within the exporter's wait for
		// their acknowledgement (5s): 500ms here rather than 2 minutes (secondExporter).
		{name: "second-exporter", duplicates: secondExporterWindow, fault: (*natsRun).secondExporter, wrongSeq: true},
	}
	// The sixth fault, the async failover where the feed diverges, runs in the failover leg:
	// TestFailoverNATSExport.
	ran := 0
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			ran++
			r := startNATSRun(t, bin, f.duplicates, Options{})
			r.write(natsChanges, f.fault)
			r.checkAll()
			t.Logf("this run: %d publishes acknowledged as duplicates, %d refused for a wrong last sequence", r.duplicates, r.wrongSeq)
			if f.wrongSeq && r.wrongSeq == 0 {
				t.Errorf("no publish was refused for a wrong last sequence: the second exporter's held publishes were never fenced by the stream")
			}
		})
	}
	d, w := suiteCounts.duplicates.Load(), suiteCounts.wrongSeq.Load()
	t.Logf("across the runs: %d publishes acknowledged as duplicates, %d refused for a wrong last sequence", d, w)
	if ran == len(faults) && !t.Failed() && (d == 0 || w == 0) {
		t.Errorf("the duplicate path (%d) or the wrong-sequence path (%d) was never taken", d, w)
	}
}

// startNATSRun starts a run: a NATS cluster, and a cluster of three reservationd replicas made
// from opts (a private MariaDB unless opts names servers) that export to it.
func startNATSRun(t *testing.T, bin string, duplicates time.Duration, opts Options) *natsRun {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	dir := t.TempDir()
	r := &natsRun{t: t, ctx: ctx, dir: dir}
	var err error
	if r.nats, err = StartNATS(ctx, dir, bin); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.nats.Close)
	for i := range 3 {
		var ps []*Proxy
		for _, addr := range r.nats.Clients {
			p, err := NewProxy(addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(p.Close)
			ps = append(ps, p)
		}
		r.proxies = append(r.proxies, ps)
		_ = i
	}
	nc, err := rsvjs.Connect(rsvjs.ConnConfig{URLs: strings.Split(r.nats.URLs(), ",")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if r.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	if duplicates > 0 {
		// Made before the exporter would make it, with a short window; the exporter checks
		// and keeps an existing stream.
		if _, err := r.js.CreateStream(ctx, jetstream.StreamConfig{Name: natsStream, Subjects: []string{rsvjs.DefaultSubjectPrefix + ".>"},
			Storage: jetstream.FileStorage, Replicas: 3, Duplicates: duplicates, FirstSeq: 1, DenyDelete: true, DenyPurge: true, AllowDirect: true}); err != nil {
			t.Fatal(err)
		}
	}
	opts.Dir, opts.Replicas = dir, 3
	opts.BuildTags = "exportbreak"
	opts.Env = []string{"RESERVATION_LOG_LEVEL=info"}
	opts.ReplicaEnv = func(i int) []string {
		var urls []string
		for _, p := range r.proxies[i] {
			urls = append(urls, "nats://"+p.Addr())
		}
		return []string{"RESERVATION_NATS_URL=" + strings.Join(urls, ",")}
	}
	r.c, err = NewCluster(ctx, opts)
	t.Cleanup(r.c.Close)
	if err != nil {
		t.Fatal(err)
	}
	addr := ""
	if r.c.MySQL != nil {
		addr = r.c.MySQL.Addr
	} else {
		addr = opts.MySQLAddrs[0]
	}
	r.useDatabase(addr)
	t.Cleanup(func() { r.db.Close() })
	return r
}

// useDatabase reads the service's database on the MySQL server at addr from now on.
func (r *natsRun) useDatabase(addr string) {
	db, err := sqlx.Open("mysql", "root@tcp("+addr+")/"+r.c.Database+"?parseTime=true&timeout=2s")
	if err != nil {
		r.t.Fatal(err)
	}
	if r.db != nil {
		r.db.Close()
	}
	r.db = db
}

// write makes at least n changes through the three replicas from 16 writers (batches of 10
// bookings on 32 resources, one of every tenth batch cancelled), and runs fault once a third of them are made.
func (r *natsRun) write(n int, fault func(*natsRun)) {
	t := r.t
	r.rounds++
	round := r.rounds
	var made atomic.Int64
	var faultOnce sync.Once
	var faults sync.WaitGroup
	var wg sync.WaitGroup
	start := time.Now()
	base := time.Date(2032, 1, 1, 0, 0, 0, 0, time.UTC)
	for g := range 16 {
		wg.Go(func() {
			for k := 0; made.Load() < int64(n) && r.ctx.Err() == nil; k++ {
				req := &pb.ReserveBatchRequest{RequestId: fmt.Sprintf("r%d-g%d-%d", round, g, k)}
				for j := range 10 {
					// Each writer of each round has 100 days of its own (k stays far below 2,400
					// batches); days, not hours, so that no Duration overflows in later rounds.
					slot := base.AddDate(0, 0, ((round-1)*16+g)*100).Add(time.Duration(k) * time.Hour)
					req.Reservations = append(req.Reservations, &pb.Reservation{UserId: "w", ResourceId: fmt.Sprintf("res-%d", (g+j)%32),
						Start: timestamppb.New(slot), End: timestamppb.New(slot.Add(time.Hour))})
				}
				var id string
				if r.call(k, func(c pb.ReservationServiceClient, ctx context.Context) error {
					resp, err := c.ReserveBatch(ctx, req)
					if len(resp.GetReservations()) > 0 {
						id = resp.GetReservations()[0].GetId()
					}
					return err
				}) {
					made.Add(int64(len(req.Reservations)))
				}
				if k%10 == 9 && id != "" && r.call(k, func(c pb.ReservationServiceClient, ctx context.Context) error {
					_, err := c.Cancel(ctx, &pb.CancelRequest{Id: id})
					if status.Code(err) == codes.NotFound {
						return nil // an earlier try cancelled it
					}
					return err
				}) {
					made.Add(1)
				}
				if made.Load() > int64(n/3) {
					faultOnce.Do(func() { faults.Go(func() { fault(r) }) })
				}
			}
		})
	}
	wg.Wait()
	faults.Wait()
	t.Logf("%d changes acknowledged in %s", made.Load(), time.Since(start).Round(time.Millisecond))
}

// call runs f on a replica, then on the others while it fails transiently, for 30s at most;
// it reports whether it succeeded.
func (r *natsRun) call(k int, f func(pb.ReservationServiceClient, context.Context) error) bool {
	deadline := time.Now().Add(30 * time.Second)
	for i := k; time.Now().Before(deadline) && r.ctx.Err() == nil; i++ {
		ctx, cancel := context.WithTimeout(r.ctx, 3*time.Second)
		err := f(r.c.Replicas[i%3].Client, ctx)
		cancel()
		if err == nil {
			return true
		}
		if !transient(err) {
			r.t.Logf("call failed for good: %v", err)
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// exporter returns the replica holding the export's lease now, waiting for one.
func (r *natsRun) exporter() int {
	for r.ctx.Err() == nil {
		if i := r.holder(); i >= 0 {
			return i
		}
		time.Sleep(50 * time.Millisecond)
	}
	return -1
}

// holder returns the replica holding the export's lease now, or -1.
func (r *natsRun) holder() int {
	var holder string
	err := r.c.Admin.QueryRowContext(r.ctx, "SELECT holder FROM `"+r.c.Database+"`.reservation_leases WHERE name = ? AND expires_at > UTC_TIMESTAMP(6)", "export:"+natsStream).Scan(&holder)
	if err == nil {
		for i, rep := range r.c.Replicas {
			if strings.Contains(holder, fmt.Sprintf("/%d/", rep.Pid())) {
				return i
			}
		}
	} else if err != sql.ErrNoRows {
		r.t.Error(err)
	}
	return -1
}

func (r *natsRun) killExporter() {
	i := r.exporter()
	r.t.Logf("SIGKILL replica %d, the exporter", i)
	rep := r.c.Replicas[i]
	r.scrape(i) // its counters die with it
	rep.Kill()
	time.Sleep(time.Second)
	if err := rep.Restart(); err != nil {
		r.t.Error(err)
		return
	}
	if err := rep.WaitServing(r.ctx); err != nil {
		r.t.Error(err)
	}
}

func (r *natsRun) killStreamLeader() {
	s, err := r.js.Stream(r.ctx, natsStream)
	if err != nil || s.CachedInfo().Cluster == nil {
		r.t.Errorf("stream info: %v", err)
		return
	}
	leader := s.CachedInfo().Cluster.Leader
	i := r.nats.Node(leader)
	if i < 0 {
		r.t.Errorf("stream leader %q is no node", leader)
		return
	}
	r.t.Logf("SIGKILL NATS node %s, the stream's leader", leader)
	r.nats.Nodes[i].Kill()
	time.Sleep(3 * time.Second)
	if err := r.nats.Nodes[i].Restart(); err != nil {
		r.t.Error(err)
		return
	}
	if err := r.nats.WaitHealthy(r.ctx, i); err != nil {
		r.t.Error(err)
	}
}

func (r *natsRun) cutExporter() {
	i := r.exporter()
	n := 0
	for range 5 {
		for _, p := range r.proxies[i] {
			n += p.Cut()
		}
		time.Sleep(400 * time.Millisecond)
	}
	r.t.Logf("cut the NATS connections of replica %d, the exporter, 5 times (%d connections)", i, n)
}

// pauseExporter SIGSTOPs the exporter for 5s, three times: the lease (3s) passes to another
// replica meanwhile, and the duplicate window (2s) passes too, so that what the paused one
// sends when it runs again (a batch it had read, buffered publishes) is refused for a wrong
// last sequence, or, its lease found lost, not sent at all.
func (r *natsRun) pauseExporter() {
	for range 3 {
		i := r.exporter()
		r.t.Logf("SIGSTOP replica %d, the exporter, for 5s (the lease lasts 3s, the duplicate window 2s)", i)
		rep := r.c.Replicas[i]
		rep.Signal(syscall.SIGSTOP)
		time.Sleep(5 * time.Second)
		rep.Signal(syscall.SIGCONT)
		time.Sleep(time.Second)
	}
}

// secondExporterWindow is the second-exporter run's duplicate window.
const secondExporterWindow = 500 * time.Millisecond

// secondExporter makes a second exporter that believes it leads: the exporter's
// publishes are held in the network (its proxies stop forwarding what it sends, while the
// answers to what was sent before still come back), and its lease is broken by hand meanwhile.
// Another replica takes the export over and stores the held changes itself, while the first
// still waits for its acknowledgements, its lease not looked at before they come. Once the
// held ids are out of the duplicate window, the held publishes are let through, within the
// first exporter's wait for them (5s): the stream must refuse them for not following its last
// message (Nats-Expected-Last-Sequence), and the first exporter counts the refusal.
//
// Each attempt writes changes of its own meanwhile (the run's writers may be done), and the
// attempts stop once the first exporter counted a refusal, 5 attempts at most: a held publish
// can miss its mark under load (its acknowledgement given up on before the release).
func (r *natsRun) secondExporter() {
	t := r.t
	for k := range 5 {
		i := r.exporter()
		refused := r.metric(i, "reservation_export_wrong_sequence_total")
		var load sync.WaitGroup
		load.Go(func() { r.write(300, func(*natsRun) {}) })
		var releases []func()
		for _, p := range r.proxies[i] {
			releases = append(releases, p.Hold())
		}
		release := func() {
			for _, f := range releases {
				f()
			}
		}
		held := func() (n int64) {
			for _, p := range r.proxies[i] {
				n += p.Held()
			}
			return n
		}
		start := time.Now()
		for held() == 0 && time.Since(start) < 2*time.Second {
			time.Sleep(5 * time.Millisecond)
		}
		heldAt := time.Now()
		if held() == 0 {
			release()
			load.Wait()
			t.Logf("attempt %d: replica %d, the exporter, sent nothing in 2s", k, i)
			continue
		}
		// What the exporter sent before the hold is stored by now; the held changes come after.
		time.Sleep(100 * time.Millisecond)
		before := r.streamLast()
		if _, err := r.c.Admin.ExecContext(r.ctx, "UPDATE `"+r.c.Database+"`.reservation_leases SET expires_at = '2000-01-01 00:00:00' WHERE name = ?", "export:"+natsStream); err != nil {
			release()
			t.Error(err)
			return
		}
		j, after := r.holder(), before
		for (j < 0 || j == i || after <= before) && time.Since(heldAt) < 4*time.Second {
			time.Sleep(20 * time.Millisecond)
			j, after = r.holder(), r.streamLast()
		}
		// The ids of the held changes leave the duplicate window: the server purges them
		// within about twice the window.
		time.Sleep(2*secondExporterWindow + 200*time.Millisecond)
		bytes := held()
		release()
		t.Logf("attempt %d: replica %d's publishes held %s (%d bytes) while its lease was broken; replica %d took over and stored the stream from seq %d to %d",
			k, i, time.Since(heldAt).Round(time.Millisecond), bytes, j, before+1, after)
		load.Wait()
		time.Sleep(time.Second)
		if now := r.metric(i, "reservation_export_wrong_sequence_total"); refused >= 0 && now > refused {
			t.Logf("attempt %d: the stream refused %v of replica %d's held publishes for a wrong last sequence", k, now-refused, i)
			return
		}
	}
}

// streamLast is the stream's last sequence now; 0 when it cannot be read.
func (r *natsRun) streamLast() uint64 {
	s, err := r.js.Stream(r.ctx, natsStream)
	if err != nil {
		return 0
	}
	return s.CachedInfo().State.LastSeq
}

// scrape adds replica i's duplicate and wrong-sequence counters to the run's and the suite's.
func (r *natsRun) scrape(i int) {
	resp, err := http.Get("http://" + r.c.Replicas[i].HTTP + "/metrics")
	if err != nil {
		r.t.Logf("scrape replica %d: %v", i, err)
		return
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		name, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		v, _ := strconv.ParseFloat(value, 64)
		switch name {
		case "reservation_export_duplicates_total":
			r.duplicates += int64(v)
			suiteCounts.duplicates.Add(int64(v))
		case "reservation_export_wrong_sequence_total":
			r.wrongSeq += int64(v)
			suiteCounts.wrongSeq.Add(int64(v))
		}
	}
}

// checkAll waits until the stream holds every stored change, then checks the run.
func (r *natsRun) checkAll() {
	t := r.t
	changes := repo.NewChanges(r.db)
	var last uint64
	for {
		oldest, _, err := changes.Unstamped(r.ctx)
		_, l, berr := changes.Bounds(r.ctx)
		s, serr := r.js.Stream(r.ctx, natsStream)
		if err == nil && berr == nil && serr == nil && oldest == 0 && s.CachedInfo().State.LastSeq >= l {
			last = l
			break
		}
		if r.ctx.Err() != nil {
			t.Fatalf("the stream never caught up with the feed: %v %v %v", err, berr, serr)
		}
		if states, err := repo.ExportStates(r.ctx, r.db); err == nil && len(states) == 1 && states[0].Halted != "" {
			t.Fatalf("the export halted: %s", states[0].Halted)
		}
		time.Sleep(100 * time.Millisecond)
	}
	feed, err := changes.Read(r.ctx, 0, last, "", 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if len(feed) < natsChanges {
		t.Errorf("the run stored %d changes, fewer than %d", len(feed), natsChanges)
	}
	msgs, err := jstest.StreamMsgs(r.ctx, r.js, natsStream)
	if err != nil {
		t.Fatal(err)
	}
	if bad := jstest.Check(msgs, feed, rsvjs.DefaultSubjectPrefix); len(bad) > 0 {
		t.Fatalf("the stream is not the feed:\n%s", strings.Join(bad, "\n"))
	}
	// A consumer's record (the stream, read in order) equals what Listen delivers.
	after := uint64(0)
	lctx, cancel := context.WithTimeout(r.ctx, time.Minute)
	defer cancel()
	ls, err := r.c.Replicas[0].Client.Listen(lctx, &pb.ListenRequest{AfterSeq: &after})
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range msgs {
		got, err := ls.Recv()
		if err != nil {
			t.Fatalf("Listen after %d changes: %v", i, err)
		}
		var rec pb.ListenResponse
		if err := proto.Unmarshal(m.Data(), &rec); err != nil || !proto.Equal(&rec, got) {
			t.Fatalf("change %d: the consumer recorded %v, Listen delivered %v (%v)", i, &rec, got, err)
		}
	}
	for i, rep := range r.c.Replicas {
		r.scrape(i)
		h, err := healthpb.NewHealthClient(rep.conn).Check(r.ctx, &healthpb.HealthCheckRequest{Service: "reservation.v1.Export"})
		if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("replica %d: export health %v, %v", i, h.GetStatus(), err)
		}
	}
	t.Logf("%d changes, stream seqs %d to %d: every check holds", len(feed), feed[0].Seq, last)
}

// waitExported waits until every change is stamped and the stream ends at the feed's last seq,
// and returns that seq.
func (r *natsRun) waitExported() uint64 {
	changes := repo.NewChanges(r.db)
	for {
		oldest, _, uerr := changes.Unstamped(r.ctx)
		_, l, err := changes.Bounds(r.ctx)
		s, serr := r.js.Stream(r.ctx, natsStream)
		if uerr == nil && oldest == 0 && err == nil && serr == nil && l > 0 && s.CachedInfo().State.LastSeq == l {
			return l
		}
		if r.ctx.Err() != nil {
			r.t.Fatalf("the stream never caught up with the feed: %v %v %v", uerr, err, serr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitHalted waits until every replica reports the export halted: its health service
// NOT_SERVING and reservation_export_halted 1. A replica still serving after a minute is an
// error (a replica finds a halt within its recheck, 10s), and the run goes on to its checks.
func (r *natsRun) waitHalted() {
	deadline := time.Now().Add(time.Minute)
	for i, rep := range r.c.Replicas {
		for {
			ctx, cancel := context.WithTimeout(r.ctx, time.Second)
			h, err := healthpb.NewHealthClient(rep.conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "reservation.v1.Export"})
			cancel()
			if err == nil && h.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING {
				break
			}
			if time.Now().After(deadline) {
				r.t.Errorf("replica %d: export health %v, %v; want NOT_SERVING", i, h.GetStatus(), err)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		if m := r.metric(i, "reservation_export_halted"); m != 1 {
			r.t.Errorf("replica %d: reservation_export_halted %v, want 1", i, m)
		}
	}
}

// statusAndReset checks that reservationd export status says the export halted and why, then
// runs reservationd export reset: the next exporter makes the stream again from the database
// (checkAll then checks it whole).
func (r *natsRun) statusAndReset() {
	status := r.reservationd("export", "status")
	if !strings.Contains(status, "HALTED") || !strings.Contains(status, "diverged") {
		r.t.Fatalf("export status does not say the export halted and why:\n%s", status)
	}
	r.t.Logf("reservationd export status:\n%s", status)
	r.t.Logf("reservationd export reset:\n%s", r.reservationd("export", "reset"))
}

// reservationd runs the replicas' binary with replica 0's environment and returns its output.
func (r *natsRun) reservationd(args ...string) string {
	cmd := exec.CommandContext(r.ctx, filepath.Join(r.dir, "reservationd"), args...)
	cmd.Env = append(os.Environ(), r.c.Replicas[0].env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("reservationd %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// metric reads one unlabelled metric of replica i; -1 when it is not there.
func (r *natsRun) metric(i int, name string) float64 {
	resp, err := http.Get("http://" + r.c.Replicas[i].HTTP + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}
