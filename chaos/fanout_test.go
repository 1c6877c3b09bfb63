package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	rsvjs "reservation/jetstream"
	pb "reservation/proto/reservation/v1"
	"reservation/repo"
)

// The fan-out figures of BENCHMARKS.md: what 1,000 subscribers to the change feed cost, as
// consumers of the JetStream stream or as Listen streams on one replica. Not a test of
// behaviour, and not in make test: run by hand, without -race (the subscribers run in a child
// process of the test binary, whose CPU is measured too):
//
//	eval "$(bash scripts/nats.sh build)"
//	go test -count=1 -timeout 30m -v -run '^$' -bench '^BenchmarkFanoutCost$' -benchtime 1x ./chaos
//
// One reservationd replica (private MariaDB and Redis, the export on) exports to a 3-node
// JetStream cluster. Each phase runs `rsvbench --workload spread --duration 10s` against the
// replica while 1,000 subscribers receive every change it makes, and measures, from the
// phase's start until every subscriber received the last change: the CPU seconds
// (/proc/<pid>/stat utime+stime) of reservationd, of the three nats-server processes and of
// the subscribers' process, and their peak RSS (sampled every 200ms; VmHWM for the
// subscribers' process, which lives one phase). The phases alternate: none (the baseline),
// nats, listen, nats, listen. Every subscriber's count is checked: each received every change
// of the phase, in seq order.

// fanoutSubscribers is how many subscribers each phase opens.
const fanoutSubscribers = 1000

// fanoutEnv names the subscribers' role in the child process: nats or listen.
const fanoutEnv = "RESERVATION_FANOUT_ROLE"

// BenchmarkFanoutCost is the measurement: a benchmark, so that only -bench runs it. b.N is
// not used: each run is one sitting of the phases.
func BenchmarkFanoutCost(b *testing.B) { fanoutCost(b) }

func fanoutCost(t testing.TB) {
	bin := os.Getenv("RESERVATION_TEST_NATS_SERVER")
	if bin == "" {
		t.Fatal("RESERVATION_TEST_NATS_SERVER is not set: eval \"$(bash scripts/nats.sh build)\"")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 28*time.Minute)
	defer cancel()
	dir := t.TempDir()
	n, err := StartNATS(ctx, dir, bin)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	c, err := NewCluster(ctx, Options{Dir: dir, Replicas: 1, ReplicaEnv: func(int) []string {
		return []string{"RESERVATION_NATS_URL=" + n.URLs()}
	}})
	defer c.Close()
	if err != nil {
		t.Fatal(err)
	}
	db, err := sqlx.Open("mysql", "root@tcp("+c.MySQL.Addr+")/"+c.Database+"?parseTime=true")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rsvbench := filepath.Join(dir, "rsvbench")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", rsvbench, "reservation/cmd/rsvbench").CombinedOutput(); err != nil {
		t.Fatalf("build rsvbench: %v\n%s", err, out)
	}
	nc, err := rsvjs.Connect(rsvjs.ConnConfig{URLs: strings.Split(n.URLs(), ",")})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	f := &fanout{t: t, ctx: ctx, nats: n, c: c, changes: repo.NewChanges(db), js: js, rsvbench: rsvbench,
		verify: "root@tcp(" + c.MySQL.Addr + ")/" + c.Database, dir: dir}
	var rows []string
	for _, role := range []string{"none", "nats", "listen", "nats", "listen"} {
		rows = append(rows, f.phase(role))
	}
	t.Logf("one sitting, %d subscribers, spread 16 clients 10s; CPU seconds from the phase's start until every subscriber had the last change, peak RSS:\n| subscribers | changes | reservationd CPU | nats-server CPU (3) | subscribers' CPU | reservationd RSS | nats-server RSS (3) | subscribers' RSS | time to the last delivery |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n%s",
		fanoutSubscribers, strings.Join(rows, "\n"))
}

type fanout struct {
	t        testing.TB
	ctx      context.Context
	nats     *NATS
	c        *Cluster
	changes  *repo.Changes
	js       jetstream.JetStream
	rsvbench string
	verify   string // rsvbench's --verify-dsn: the capacity check after each run
	dir      string
}

// phase runs one phase with the subscribers of role (none: no subscriber) and returns its row.
func (f *fanout) phase(role string) string {
	t := f.t
	from := f.exported()
	var child *exec.Cmd
	var childIn io.WriteCloser
	var childOut *bufio.Reader
	if role != "none" {
		child = exec.CommandContext(f.ctx, os.Args[0], "-test.run=^$", "-test.bench=^BenchmarkFanoutClient$", "-test.benchtime=1x")
		child.Env = append(os.Environ(), fanoutEnv+"="+role, "RESERVATION_FANOUT_FROM="+strconv.FormatUint(from, 10),
			"RESERVATION_FANOUT_NATS="+f.nats.URLs(), "RESERVATION_FANOUT_ADDR="+f.c.Replicas[0].Addr)
		stderr, err := os.Create(filepath.Join(f.dir, "subscribers-"+role+".log"))
		if err != nil {
			t.Fatal(err)
		}
		defer stderr.Close()
		child.Stderr = stderr // nats.go reports each connection's errors there, as it closes at the end
		if childIn, err = child.StdinPipe(); err != nil {
			t.Fatal(err)
		}
		out, err := child.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		childOut = bufio.NewReader(out)
		if err := child.Start(); err != nil {
			t.Fatal(err)
		}
		defer child.Wait()
		defer childIn.Close()
		if line := readTagged(t, childOut, "ready"); line == "" {
			t.Fatal("the subscribers' process never got ready")
		}
	}
	server := []int{f.c.Replicas[0].Pid()}
	var natsPids []int
	for _, p := range f.nats.Nodes {
		natsPids = append(natsPids, p.Pid())
	}
	var clientPids []int
	if child != nil {
		clientPids = []int{child.Process.Pid}
	}
	groups := [][]int{server, natsPids, clientPids}
	cpu0 := make([]float64, len(groups))
	for i, g := range groups {
		cpu0[i] = cpuSeconds(g)
	}
	peaks := make([]atomic.Int64, len(groups))
	sampleCtx, stopSampling := context.WithCancel(f.ctx)
	var sampler sync.WaitGroup
	sampler.Go(func() {
		for sampleCtx.Err() == nil {
			for i, g := range groups {
				if v := rssBytes(g, "VmRSS"); v > peaks[i].Load() {
					peaks[i].Store(v)
				}
			}
			reservationSleep(sampleCtx, 200*time.Millisecond)
		}
	})
	start := time.Now()
	out, err := exec.CommandContext(f.ctx, f.rsvbench, "--addr", f.c.Replicas[0].Addr, "--workload", "spread", "--duration", "10s", "--verify-dsn", f.verify).CombinedOutput()
	if err != nil {
		t.Fatalf("rsvbench: %v\n%s", err, out)
	}
	through := f.exported()
	counts := ""
	if child != nil {
		fmt.Fprintln(childIn, through)
		counts = readTagged(t, childOut, "done")
	}
	elapsed := time.Since(start)
	cpu := make([]float64, len(groups))
	for i, g := range groups {
		cpu[i] = cpuSeconds(g) - cpu0[i]
	}
	stopSampling()
	sampler.Wait()
	if child != nil {
		if v := rssBytes(clientPids, "VmHWM"); v > peaks[2].Load() {
			peaks[2].Store(v)
		}
	}
	changes := through - from
	t.Logf("phase %s: %d changes (seqs %d to %d) in %s; rsvbench: %s; subscribers: %s", role, changes, from+1, through, elapsed.Round(time.Millisecond), lastLines(string(out), 3), counts)
	if child != nil {
		var got struct{ Min, Max, Subscribers int64 }
		if err := json.Unmarshal([]byte(strings.TrimPrefix(counts, "done ")), &got); err != nil {
			t.Fatalf("the subscribers' counts %q: %v", counts, err)
		}
		if got.Subscribers != fanoutSubscribers || got.Min != int64(changes) || got.Max != int64(changes) {
			t.Errorf("phase %s: %d subscribers received %d to %d changes each, want %d each of %d", role, got.Subscribers, got.Min, got.Max, changes, fanoutSubscribers)
		}
	}
	mb := func(i int) string { return fmt.Sprintf("%d MB", peaks[i].Load()>>20) }
	client, clientRSS := "—", "—"
	if child != nil {
		client, clientRSS = fmt.Sprintf("%.1f s", cpu[2]), mb(2)
	}
	// The subscribers' process exits; the consumers it left on the stream go within their
	// inactive threshold.
	if child != nil {
		childIn.Close()
		child.Wait()
	}
	for s, err := f.js.Stream(f.ctx, natsStream); err == nil && s.CachedInfo().State.Consumers > 0; s, err = f.js.Stream(f.ctx, natsStream) {
		time.Sleep(500 * time.Millisecond)
	}
	name := map[string]string{"none": "none (baseline)", "nats": "1,000 ordered consumers on the stream", "listen": "1,000 Listen streams on the replica"}[role]
	row := fmt.Sprintf("| %s | %d | %.1f s | %.1f s | %s | %s | %s | %s | %s |", name, changes, cpu[0], cpu[1], client, mb(0), mb(1), clientRSS, elapsed.Round(100*time.Millisecond))
	t.Log(row)
	return row
}

// exported waits until every change is stamped and exported, and returns the feed's last seq.
func (f *fanout) exported() uint64 {
	for {
		oldest, _, uerr := f.changes.Unstamped(f.ctx)
		_, last, err := f.changes.Bounds(f.ctx)
		s, serr := f.js.Stream(f.ctx, natsStream)
		if uerr == nil && err == nil && oldest == 0 && (last == 0 || serr == nil && s.CachedInfo().State.LastSeq == last) {
			return last
		}
		if f.ctx.Err() != nil {
			f.t.Fatalf("the export never caught up: %v %v %v", uerr, err, serr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// readTagged reads the child's stdout until a line starting with tag, and returns it.
func readTagged(t testing.TB, r *bufio.Reader, tag string) string {
	var skipped []string
	for {
		line, err := r.ReadString('\n')
		if strings.HasPrefix(line, tag) {
			return strings.TrimSpace(line)
		}
		skipped = append(skipped, line)
		if err != nil {
			t.Fatalf("the subscribers' process ended before %q: %v\n%s", tag, err, strings.Join(skipped, ""))
		}
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " / ")
}

// cpuSeconds is the user and system CPU time of the processes, from /proc/<pid>/stat (clock
// ticks of 1/100 s, Linux's USER_HZ).
func cpuSeconds(pids []int) float64 {
	var ticks float64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// The fields after the command's name, which is in parentheses and may hold spaces:
		// utime and stime are the 14th and 15th fields, 12th and 13th after the name.
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) > 12 {
			u, _ := strconv.ParseFloat(fields[11], 64)
			k, _ := strconv.ParseFloat(fields[12], 64)
			ticks += u + k
		}
	}
	return ticks / 100
}

// rssBytes is the sum of a /proc/<pid>/status field (VmRSS, VmHWM) over the processes.
func rssBytes(pids []int, field string) int64 {
	var total int64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, field+":"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				total += kb << 10
			}
		}
	}
	return total
}

func reservationSleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// BenchmarkFanoutClient is BenchmarkFanoutCost's child process: it opens the subscribers of its role
// after seq RESERVATION_FANOUT_FROM, says "ready", reads the last seq of the phase from stdin,
// waits until every subscriber received every change through it in seq order, says "done"
// with the counts, and exits when stdin closes.
func BenchmarkFanoutClient(t *testing.B) {
	role := os.Getenv(fanoutEnv)
	if role == "" {
		t.Skip("BenchmarkFanoutCost's subscribers' process, started by it alone")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	from, _ := strconv.ParseUint(os.Getenv("RESERVATION_FANOUT_FROM"), 10, 64)
	subs := make([]fanoutSub, fanoutSubscribers)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	switch role {
	case "nats":
		var streams []jetstream.Stream
		for range 4 {
			nc, err := rsvjs.Connect(rsvjs.ConnConfig{URLs: strings.Split(os.Getenv("RESERVATION_FANOUT_NATS"), ","), Name: "fanout"})
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			s, err := js.Stream(ctx, natsStream)
			if err != nil {
				t.Fatal(err)
			}
			streams = append(streams, s)
		}
		for i := range subs {
			subs[i].next = from + 1
			var cons jetstream.Consumer
			var err error
			for attempt := 0; attempt < 5; attempt++ { // a busy server times a creation out
				cons, err = streams[i%len(streams)].OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from + 1,
					InactiveThreshold: 5 * time.Second}) // gone soon after the phase: the next one makes its own
				if err == nil {
					break
				}
				time.Sleep(time.Second)
			}
			if err != nil {
				t.Fatalf("consumer %d: %v", i, err)
			}
			cc, err := cons.Consume(func(m jetstream.Msg) {
				var r pb.ListenResponse
				if err := proto.Unmarshal(m.Data(), &r); err != nil {
					subs[i].bad.Add(1)
					return
				}
				subs[i].take(r.GetSeq())
			})
			if err != nil {
				t.Fatalf("consume %d: %v", i, err)
			}
			defer cc.Stop()
		}
	case "listen":
		var conns []pb.ReservationServiceClient
		for range 4 {
			conn, err := grpc.NewClient(os.Getenv("RESERVATION_FANOUT_ADDR"), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conns = append(conns, pb.NewReservationServiceClient(conn))
		}
		for i := range subs {
			subs[i].next = from + 1
			after := from
			stream, err := conns[i%len(conns)].Listen(ctx, &pb.ListenRequest{AfterSeq: &after})
			if err != nil {
				t.Fatalf("listen %d: %v", i, err)
			}
			wg.Go(func() {
				for {
					r, err := stream.Recv()
					if err != nil {
						return
					}
					subs[i].take(r.GetSeq())
				}
			})
		}
	default:
		t.Fatalf("%s=%q: nats or listen", fanoutEnv, role)
	}
	// Give the subscribers a moment to be in place before the phase's measurement starts.
	time.Sleep(2 * time.Second)
	fmt.Println("ready")
	in := bufio.NewReader(os.Stdin)
	line, err := in.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	through, err := strconv.ParseUint(strings.TrimSpace(line), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	for {
		done := true
		for i := range subs {
			if subs[i].last.Load() < through {
				done = false
				break
			}
		}
		if done {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	var got struct{ Min, Max, Subscribers int64 }
	got.Min = -1
	for i := range subs {
		n := subs[i].n.Load()
		if subs[i].bad.Load() > 0 {
			n = -subs[i].bad.Load() // a gap, a repeat or an undecodable body
		}
		if got.Min < 0 || n < got.Min {
			got.Min = n
		}
		got.Max = max(got.Max, n)
		got.Subscribers++
	}
	b, _ := json.Marshal(got)
	fmt.Printf("done %s\n", b)
	io.Copy(io.Discard, in) // until the parent closes stdin
}

// fanoutSub counts what one subscriber received: n changes, the last seq, and the changes
// that did not come in seq order (bad).
type fanoutSub struct {
	mu     sync.Mutex // serialises take
	next   uint64     // set before any delivery
	n, bad atomic.Int64
	last   atomic.Uint64
}

func (s *fanoutSub) take(seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq != s.next {
		s.bad.Add(1)
	} else {
		s.next++
	}
	s.n.Add(1)
	s.last.Store(max(s.last.Load(), seq))
}
