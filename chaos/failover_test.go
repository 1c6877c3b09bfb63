package chaos

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"reservation"
	pb "reservation/proto/reservation/v1"
	"reservation/service/feedtest"
)

// TestFailover runs reservationd replicas given a primary and its replica as two hosts of one
// DSN, SIGKILLs the primary mid-load, promotes the replica, and checks what writers and
// listeners got. It needs its own pair of servers (scripts/replication.sh), so it runs only
// under make test-failover, which sets RESERVATION_TEST_FAILOVER=1.
func TestFailover(t *testing.T) {
	if os.Getenv("RESERVATION_TEST_FAILOVER") != "1" {
		t.Skip("needs a primary and a replica of its own: run make test-failover")
	}
	for _, mode := range []string{"semisync", "async", "switchover"} {
		t.Run(mode, func(t *testing.T) { failover(t, mode) })
	}
}

// The modes: semisync and async SIGKILL the primary; switchover (semi-sync) leaves it running
// but sets it read_only, as a planned switchover does, and the service connects as a user
// without SUPER, as an application should: the demoted primary then refuses its writes itself
// (1290), and nothing may be written there after read_only was set.

func failover(t *testing.T, mode string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	replMode := mode
	if mode == "switchover" {
		replMode = "semisync"
	}
	env := replicationUp(t, ctx, replMode)
	t.Cleanup(func() { exec.Command("bash", "../scripts/replication.sh", "stop").Run() })
	primaryAddr, replicaAddr := env["RSV_REPL_PRIMARY_ADDR"], env["RSV_REPL_REPLICA_ADDR"]
	primaryPid, _ := strconv.Atoi(env["RSV_REPL_PRIMARY_PID"])

	primary := openAdmin(t, primaryAddr)
	replica := openAdmin(t, replicaAddr)
	user := "root"
	for _, stmt := range []string{"CREATE DATABASE failover", "CREATE USER rsv@'%'", "GRANT ALL ON failover.* TO rsv@'%'"} {
		if _, err := primary.ExecContext(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	if mode == "switchover" {
		user = "rsv"
	}
	dir := t.TempDir()
	redis, err := startIn(ctx, dir, "redis", StartRedis)
	if err != nil {
		t.Fatal(err)
	}
	defer redis.Kill()
	bin := filepath.Join(dir, "reservationd")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "reservation/cmd/reservationd").CombinedOutput(); err != nil {
		t.Fatalf("build reservationd: %v\n%s", err, out)
	}
	// Both hosts in one DSN, the primary first: nothing else tells the service of a failover.
	dsn := user + "@tcp(" + primaryAddr + "," + replicaAddr + ")/failover?timeout=2s&readTimeout=10s&writeTimeout=10s"
	var replicas []*Replica
	for i := range 2 {
		r := startService(t, ctx, dir, fmt.Sprintf("service-%d", i), bin, dsn, redis.Addr)
		defer func() { r.conn.Close(); r.Kill() }()
		replicas = append(replicas, r)
	}

	h := newHistory()
	load, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var writers sync.WaitGroup
	for i := range 8 {
		writers.Go(func() { Writer(load, i, replicas, h, 3) })
	}
	listenCtx, stopListeners := context.WithCancel(ctx)
	defer stopListeners()
	listeners := make([]*cursorListener, 3)
	var lwg sync.WaitGroup
	for i := range listeners {
		listeners[i] = &cursorListener{ends: map[string]int{}}
		lwg.Go(func() { listeners[i].run(listenCtx, replicas, i) })
	}

	time.Sleep(3 * time.Second)
	if mode == "async" {
		// The replica stops receiving: what the primary commits from here on is lost with it.
		if _, err := replica.ExecContext(ctx, "STOP SLAVE IO_THREAD"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second)
	}
	// Nothing was written to the replica while it was read-only: its binlog holds no
	// transaction of its own server id (2).
	var own string
	if err := replica.QueryRowContext(ctx, "SELECT @@gtid_binlog_pos").Scan(&own); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(own, "-2-") {
		t.Errorf("the read-only replica wrote transactions of its own: gtid_binlog_pos %s", own)
	}
	acksBefore := h.acked()
	var demotedAt string // the old primary's binlog position once it was read-only
	if mode == "switchover" {
		if _, err := primary.ExecContext(ctx, "SET GLOBAL read_only = 1"); err != nil {
			t.Fatal(err)
		}
		if err := primary.QueryRowContext(ctx, "SELECT @@gtid_binlog_pos").Scan(&demotedAt); err != nil {
			t.Fatal(err)
		}
	} else if err := syscall.Kill(primaryPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	promoteReplica(t, ctx, replica)
	promoted := time.Now()
	what := "SIGKILLed"
	if mode == "switchover" {
		what = "set read_only"
	}
	t.Logf("%s: primary %s after %d acknowledged reservations; replica promoted %s later", mode, what, acksBefore, promoted.Sub(killed).Round(time.Millisecond))

	// Each service replica resumes writes by itself: time from the promotion to its first
	// acknowledged Reserve.
	resumed := make([]time.Duration, len(replicas))
	for i, r := range replicas {
		resumed[i] = firstWrite(t, ctx, r, i, promoted, h)
	}
	time.Sleep(3 * time.Second)
	stopLoad()
	writers.Wait()
	// Calls given up on may still commit until their deadline; then every change gets its seq.
	time.Sleep(callTimeout)
	waitStamped(t, ctx, replica)
	feed := storedFeed(t, ctx, replica)
	for _, l := range listeners {
		l.waitFor(ctx, feed)
	}
	stopListeners()
	lwg.Wait()

	lost := lostReservations(t, ctx, replica, h)
	var verdicts []string
	divergedListeners := 0
	for i, l := range listeners {
		v, ok := l.verdict(feed)
		verdicts = append(verdicts, fmt.Sprintf("listener %d: %s", i, v))
		if !ok {
			t.Errorf("listener %d: %s", i, v)
		}
		if l.diverged > 0 {
			divergedListeners++
		}
	}
	t.Logf("%s: acknowledged %d reservations (%d before the kill), lost %d; stored feed %d changes; resume after promotion: %v; calls %v\n  %s",
		mode, h.acked(), acksBefore, len(lost), len(feed), resumed, h.Codes, strings.Join(verdicts, "\n  "))
	for _, d := range resumed {
		if d > 30*time.Second {
			t.Errorf("a service replica took %s to write after the promotion", d)
		}
	}
	if mode == "switchover" {
		var now string
		if err := primary.QueryRowContext(ctx, "SELECT @@gtid_binlog_pos").Scan(&now); err != nil {
			t.Fatal(err)
		}
		if now != demotedAt {
			t.Errorf("the demoted primary was written after read_only was set: binlog at %s, then %s", demotedAt, now)
		}
	}
	if mode != "async" {
		// Change by change, every listener's history (from the start of the feed) against
		// the calls and their answers. (Async loses acknowledged changes by design.)
		histories := make([][]*pb.ListenResponse, len(listeners))
		for i, l := range listeners {
			l.mu.Lock()
			histories[i] = slices.Clone(l.history)
			l.mu.Unlock()
		}
		for _, d := range h.Feed.Check(0, histories...) {
			t.Errorf("%s: feed unlike the calls: %s", mode, d)
		}
		if len(lost) > 0 {
			t.Errorf("%s lost %d acknowledged reservations: %v", mode, len(lost), lost[:min(5, len(lost))])
		}
		if divergedListeners > 0 {
			t.Errorf("%s: %d listeners were told FEED_DIVERGED: the new primary should hold every change they got", mode, divergedListeners)
		}
	}
}

// replicationUp starts a fresh primary and replica and returns the script's exports.
func replicationUp(t *testing.T, ctx context.Context, mode string) map[string]string {
	t.Helper()
	cmd := exec.CommandContext(ctx, "bash", "../scripts/replication.sh", "up", mode)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("scripts/replication.sh up %s: %v\n%s", mode, err, stderr.String())
	}
	env := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "=")
		if ok {
			env[k] = strings.Trim(v, "'")
		}
	}
	return env
}

func openAdmin(t *testing.T, addr string) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", "root@tcp("+addr+")/?timeout=2s")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// promoteReplica lets the replica apply all it received, then makes it the primary. A
// transaction it received only in part (the primary died sending it) was never acknowledged
// by the replica, so semi-sync never acknowledged it to a client: STOP SLAVE drops it.
func promoteReplica(t *testing.T, ctx context.Context, db *sql.DB) {
	t.Helper()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		state := slaveStatus(t, ctx, conn)["Slave_SQL_Running_State"]
		if strings.HasPrefix(state, "Slave has read all relay log") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replica did not apply its relay log within 30s: %q", state)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, stmt := range []string{"STOP SLAVE", "RESET SLAVE ALL", "SET GLOBAL read_only = 0"} {
		if _, err := conn.ExecContext(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
}

func slaveStatus(t *testing.T, ctx context.Context, conn *sql.Conn) map[string]string {
	t.Helper()
	rows, err := conn.QueryContext(ctx, "SHOW SLAVE STATUS")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	vals := make([]sql.RawBytes, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	out := map[string]string{}
	if rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		for i, c := range cols {
			out[c] = string(vals[i])
		}
	}
	return out
}

func startService(t *testing.T, ctx context.Context, dir, name, bin, dsn, redisAddr string) *Replica {
	t.Helper()
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	httpPort, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	r := &Replica{Addr: "127.0.0.1:" + strconv.Itoa(port)}
	env := []string{
		"RESERVATION_GRPC_ADDR=" + r.Addr,
		"RESERVATION_HTTP_ADDR=127.0.0.1:" + strconv.Itoa(httpPort),
		"RESERVATION_MYSQL_DSN=" + dsn,
		"RESERVATION_REDIS_ADDR=" + redisAddr,
		"RESERVATION_LOCK=redis",
		"RESERVATION_DRAIN=2s",
		"RESERVATION_LOG_LEVEL=warn",
	}
	if r.Proc, err = Start(name, bin, filepath.Join(dir, name+".log"), env); err != nil {
		t.Fatal(err)
	}
	if r.conn, err = grpc.NewClient(r.Addr, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		t.Fatal(err)
	}
	r.Client = pb.NewReservationServiceClient(r.conn)
	if err := r.WaitServing(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s log:\n%s", name, tail(r.Log(), 40))
		}
	})
	return r
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// firstWrite books on its own resource through r until it is acknowledged, records the
// acknowledged change in h's calls, and returns how long after since that was. (Its request id
// makes the retries one reservation.)
func firstWrite(t *testing.T, ctx context.Context, r *Replica, i int, since time.Time, h *History) time.Duration {
	t.Helper()
	start := time.Date(2032, 1, 1, 0, 0, 0, 0, time.UTC)
	req := &pb.ReserveRequest{RequestId: fmt.Sprint("probe-", i), Reservation: &pb.Reservation{
		UserId: "probe", ResourceId: fmt.Sprint("probe-", i), Start: timestamppb.New(start), End: timestamppb.New(start.Add(time.Hour))}}
	for {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		resp, err := r.Client.Reserve(cctx, req)
		cancel()
		if err == nil {
			h.Feed.Acked(feedtest.Create, resp.GetReservation())
			return time.Since(since)
		}
		if ctx.Err() != nil || !transient(err) {
			t.Fatalf("%s never wrote after the promotion: %v", r.Name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitStamped(t *testing.T, ctx context.Context, db *sql.DB) {
	t.Helper()
	for {
		var n int
		if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM failover.reservation_changes WHERE seq IS NULL").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("%d changes never got their seq", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// change is what a seq names: the reservation and the op.
type change struct {
	rid string
	op  int
}

func storedFeed(t *testing.T, ctx context.Context, db *sql.DB) map[uint64]change {
	t.Helper()
	rows, err := db.QueryContext(ctx, "SELECT seq, reservation_id, op FROM failover.reservation_changes WHERE seq IS NOT NULL")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[uint64]change{}
	for rows.Next() {
		var seq uint64
		var c change
		if err := rows.Scan(&seq, &c.rid, &c.op); err != nil {
			t.Fatal(err)
		}
		out[seq] = c
	}
	return out
}

// lostReservations are the acknowledged reservations, never cancelled, that the new primary
// lacks.
func lostReservations(t *testing.T, ctx context.Context, db *sql.DB, h *History) []string {
	t.Helper()
	var lost []string
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, id := range h.Acked {
		if h.Cancelled[id] || h.CancelUnknown[id] {
			continue
		}
		var n int
		if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM failover.reservations WHERE id = ?", id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			lost = append(lost, id)
		}
	}
	return lost
}

func (h *History) acked() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.Acked)
}

// cursorListener tails the feed with resume_cursor, reconnecting to a random service replica
// after every break. Told FEED_DIVERGED, it starts a new history from the beginning, as a
// client re-reads the reservations. Within one history it checks that seqs come without a
// gap and that a seq never names two changes.
type cursorListener struct {
	mu         sync.Mutex
	history    []*pb.ListenResponse // the changes of the current history, in order
	diverged   int                  // how many times it was told FEED_DIVERGED
	ends       map[string]int       // how streams ended
	violations []string
}

func (l *cursorListener) position() (string, uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.history) == 0 {
		return reservation.FeedCursor{}.String(), 0
	}
	m := l.history[len(l.history)-1]
	return m.GetCursor(), m.GetSeq()
}

func (l *cursorListener) run(ctx context.Context, replicas []*Replica, seed int) {
	for n := seed; ctx.Err() == nil; n++ {
		cursor, _ := l.position()
		// Each stream lasts a while only, so that the listener also resumes from its cursor
		// across the failover, on either service replica, not just keeps one stream open.
		sctx, cancel := context.WithTimeout(ctx, time.Duration(700+300*seed)*time.Millisecond)
		stream, err := replicas[n%len(replicas)].Client.Listen(sctx, &pb.ListenRequest{ResumeCursor: cursor})
		for err == nil {
			var m *pb.ListenResponse
			if m, err = stream.Recv(); err == nil {
				l.take(m)
			}
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		l.mu.Lock()
		if isDiverged(err) {
			l.diverged++
			l.history = nil
			l.ends["FEED_DIVERGED"]++
		} else {
			l.ends[status.Code(err).String()]++
		}
		l.mu.Unlock()
		if !errorsIsDeadline(err) {
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func errorsIsDeadline(err error) bool { return status.Code(err) == codes.DeadlineExceeded }

func (l *cursorListener) take(m *pb.ListenResponse) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var last uint64
	if len(l.history) > 0 {
		last = l.history[len(l.history)-1].GetSeq()
	}
	switch {
	case m.GetSeq() <= last:
		// A seq already received: it must name the same change.
		prev := l.history[sortSearch(l.history, m.GetSeq())]
		if prev.GetCursor() != m.GetCursor() {
			l.violations = append(l.violations, fmt.Sprintf("seq %d was %s %s, now %s %s", m.GetSeq(), prev.GetOp(), prev.GetReservation().GetId(), m.GetOp(), m.GetReservation().GetId()))
		}
		return
	case m.GetSeq() != last+1:
		l.violations = append(l.violations, fmt.Sprintf("gap: seq %d after %d", m.GetSeq(), last))
	}
	l.history = append(l.history, m)
}

func sortSearch(h []*pb.ListenResponse, seq uint64) int {
	lo, hi := 0, len(h)
	for lo < hi {
		mid := (lo + hi) / 2
		if h[mid].GetSeq() < seq {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return min(lo, len(h)-1)
}

// waitFor waits until the listener reached the end of feed, or a while passed.
func (l *cursorListener) waitFor(ctx context.Context, feed map[uint64]change) {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if _, seq := l.position(); seq >= uint64(len(feed)) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// verdict says how the listener fared against the stored feed: its current history must be
// the stored feed, complete and in order, and it must never have met a violation.
func (l *cursorListener) verdict(feed map[uint64]change) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.violations) > 0 {
		return fmt.Sprintf("%d violations, first: %s", len(l.violations), l.violations[0]), false
	}
	for _, m := range l.history {
		if want, ok := feed[m.GetSeq()]; !ok || want.rid != m.GetReservation().GetId() || want.op != int(m.GetOp()) {
			return fmt.Sprintf("seq %d is %s %s here, %v in the stored feed", m.GetSeq(), m.GetOp(), m.GetReservation().GetId(), want), false
		}
	}
	if uint64(len(l.history)) != uint64(len(feed)) {
		return fmt.Sprintf("has %d of the %d stored changes", len(l.history), len(feed)), false
	}
	kind := "gapless continuation"
	if l.diverged > 0 {
		kind = fmt.Sprintf("told FEED_DIVERGED %d time(s), then gapless in the new history", l.diverged)
	}
	return fmt.Sprintf("%s, %d changes, stream ends %v", kind, len(l.history), l.ends), true
}

func isDiverged(err error) bool {
	st := status.Convert(err)
	if st.Code() != codes.OutOfRange {
		return false
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == reservation.ReasonFeedDiverged {
			return true
		}
	}
	return false
}
