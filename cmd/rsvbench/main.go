// Command rsvbench is the load generator: it runs workloads against the service over gRPC
// and, with --floor-mysql and --floor-postgres, the same workloads straight against the
// databases with no service in front, and prints them side by side with their ratios.
//
//	rsvbench --workload spread --clients 16 --duration 10s --addr 127.0.0.1:50051 \
//	  --verify-dsn 'root@tcp(127.0.0.1:3306)/reservation' --floor-mysql --floor-postgres
//	rsvbench --workload spread,pool,capacity --duration 10s --verify-dsn ...
//
// Workloads: spread (random 1–3 h windows over a year on --resources resources), hot (the same
// on --resources 1 or a few), mixed (reserve, confirm, query, cancel), read (Get, and a
// one-week Query and FreeSlots on one resource, on a pre-filled table), pool (bookings of a pool
// of --resources 10 units, put in the catalogue first: the service assigns a unit or answers
// POOL_FULL) and capacity (bookings of --resources 1 resource of --capacity 20, put first), both
// on a calendar that rolls forward as they book, asking for --load 0.7 of the places; search
// (SearchAvailability by a label selector over --resources 10,000 labelled resources in pools
// of 100, for 1–3-night windows within the span; --prefill books random nights first). A
// comma-separated list runs each workload in turn and closes with each one's ok/s and p99
// beside the first's. After each run it checks with SQL that no resource ever held more
// reservations at once than its capacity. --clients 16,64 runs the whole list at each count.
//
// Beside each run's rates it reports its cost: the whole machine's busy CPU per ok call, from
// /proc/stat read before and after the run, and, through --verify-dsn (the service) or its own
// connection (the MySQL floor), the MySQL server's SHOW GLOBAL STATUS counters per ok call:
// commits, statements, SELECTs, INSERTs and UPDATEs, rows written, updated and deleted, bytes
// received and fsyncs. Both are whole-machine, whole-server figures: run on a quiet machine, or compare
// runs of one sitting.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

// outcome is how an operation ended.
type outcome int

const (
	ok      outcome = iota
	refused         // the window is taken: RESERVATION_CONFLICT, or POOL_FULL
	failed
)

// Refusal reasons, as the service's ErrorInfo names them.
const (
	reasonConflict = "RESERVATION_CONFLICT"
	reasonPoolFull = "POOL_FULL"
)

// booking is one Reserve: of resource, or, with resource empty, of pool.
type booking struct {
	resource, pool string
	start, end     time.Time
}

// resourceSpec is a resource a workload puts in the catalogue before it runs.
type resourceSpec struct {
	id, pool string
	capacity int
	labels   map[string]string
}

// target is what a workload runs against: the service, or a database floor.
type target interface {
	name() string
	// catalogue puts the resources; false when the target has no catalogue (no pools, no
	// capacity), and then the workloads that need one are not run against it.
	catalogue(ctx context.Context, rs []resourceSpec) (bool, error)
	// reserve books b and returns the reservation's id and the resource it got. A refusal's
	// code is its reason, a failure's what went wrong.
	reserve(ctx context.Context, b booking) (id, resource string, out outcome, code string)
	// other runs a non-reserve operation of the mixed and read workloads; false if unsupported.
	other(ctx context.Context, kind string, id, resource string, start, end time.Time) (outcome, string, bool)
	// overbooked counts the reservations that start at an instant when their resource holds
	// more live reservations than its capacity (a capacity-1 resource: an overlap).
	overbooked(ctx context.Context) (int, error)
	close()
}

type config struct {
	workloads []string
	clients   int
	duration  time.Duration
	resources int // 0: each workload's default
	capacity  int
	span      time.Duration // 0: each workload's default
	load      float64       // pool and capacity: demand over places
	seed      uint64
	prefill   int
	prefix    string
	// consistency is how the service's reads ask to be answered (--consistency).
	consistency string
}

// result is one run's figures.
type result struct {
	workload  string
	target    string
	ok        int
	refused   map[string]int // by reason
	errs      map[string]int
	latencies []time.Duration
	elapsed   time.Duration
	over      int
	reads     map[string][]time.Duration
	resources int
	clients   int
	busy      time.Duration    // whole-machine busy CPU over the run
	cpuKnown  bool             // busy was measured (/proc/stat)
	counters  map[string]int64 // the server's dbCounters over the run; nil: not read
}

func (r result) refusals() int {
	n := 0
	for _, v := range r.refused {
		n += v
	}
	return n
}

var knownWorkloads = []string{"spread", "hot", "mixed", "read", "pool", "capacity", "search"}

func main() {
	var cfg config
	addr := flag.String("addr", "127.0.0.1:50051", "the service's gRPC address; empty to skip the service")
	verify := flag.String("verify-dsn", "", "the service's MySQL database, for the capacity check after the run")
	floorMySQL := flag.Bool("floor-mysql", false, "also run the workload straight against MySQL (the service's transaction, no gRPC, no Redis)")
	mysqlDSN := flag.String("mysql-dsn", "root@tcp(127.0.0.1:3306)/", "MySQL server for --floor-mysql (a database rsvbench_floor is made)")
	floorPG := flag.Bool("floor-postgres", false, "also run it against PostgreSQL with the RFC's design (EXCLUDE USING gist and a change trigger; not pool or capacity)")
	pgDSN := flag.String("pg-dsn", "postgres://postgres@127.0.0.1:5432/postgres", "PostgreSQL server for --floor-postgres (a database rsvbench_floor is made)")
	workloads := flag.String("workload", "spread", "spread, hot, mixed, read, pool, capacity or search; a comma-separated list runs each in turn")
	clientsFlag := flag.String("clients", "16", "concurrent clients; a comma-separated list (16,64) runs each workload at each, in turn")
	flag.DurationVar(&cfg.duration, "duration", 10*time.Second, "how long each workload runs on each target")
	flag.IntVar(&cfg.resources, "resources", 0, "resources to spread over, or the pool's units (default: 10000 for spread, mixed and read, 1 for hot and capacity, 10 for pool)")
	flag.IntVar(&cfg.capacity, "capacity", 20, "capacity: the capacity of its resources")
	flag.DurationVar(&cfg.span, "span", 0, "the windows start within this long from 2031-01-01 (default: a year), or for pool and capacity from where their calendar has rolled to (default: 24h)")
	flag.Float64Var(&cfg.load, "load", 0.7, "pool and capacity: the bookings asked for at an instant, as a share of the places (units, or resources times capacity)")
	flag.Uint64Var(&cfg.seed, "seed", 1, "random seed")
	flag.StringVar(&cfg.prefix, "resource-prefix", "", "resource ids are this prefix and a number below --resources (default: a prefix new to the run)")
	flag.IntVar(&cfg.prefill, "prefill", 100000, "read and search: reservations stored before the run; 0 reads up to 100,000 stored ids through --verify-dsn instead (for a table filled by other means)")
	flag.StringVar(&cfg.consistency, "consistency", "strong", "read, mixed and search: how the service's reads ask to be answered: strong (the database), ryw (READ_YOUR_WRITES with the token of a write made first) or bounded (BOUNDED, max_staleness 1s)")
	flag.Parse()
	if !slices.Contains(consistencies, cfg.consistency) {
		fmt.Fprintf(os.Stderr, "rsvbench: --consistency: %q is not one of %s\n", cfg.consistency, strings.Join(consistencies, ", "))
		os.Exit(2)
	}
	for _, w := range strings.Split(*workloads, ",") {
		if w = strings.TrimSpace(w); !slices.Contains(knownWorkloads, w) {
			fmt.Fprintf(os.Stderr, "rsvbench: --workload: %q is not one of %s\n", w, strings.Join(knownWorkloads, ", "))
			os.Exit(2)
		}
		cfg.workloads = append(cfg.workloads, strings.TrimSpace(w))
	}
	clientCounts, err := parseClients(*clientsFlag)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rsvbench: --clients:", err)
		os.Exit(2)
	}
	cfg.clients = clientCounts[0]
	if cfg.capacity < 1 || cfg.resources < 0 || cfg.span < 0 || cfg.load <= 0 {
		fmt.Fprintln(os.Stderr, "rsvbench: --capacity must be at least 1, --resources and --span not negative, --load above 0")
		os.Exit(2)
	}
	ctx := context.Background()
	type opener func() (target, error)
	var targets []opener
	if *addr != "" {
		targets = append(targets, func() (target, error) {
			t, err := newService(ctx, *addr, *verify)
			if s, ok := t.(*service); ok {
				s.consistency = cfg.consistency
			}
			return t, err
		})
	}
	if *floorMySQL {
		targets = append(targets, func() (target, error) { return newMySQLFloor(ctx, *mysqlDSN) })
	}
	if *floorPG {
		targets = append(targets, func() (target, error) { return newPostgresFloor(ctx, *pgDSN) })
	}
	var results []result
	for _, clients := range clientCounts {
		run := cfg
		run.clients = clients
		for _, w := range cfg.workloads {
			for _, open := range targets {
				t, err := open()
				if err != nil {
					fmt.Fprintln(os.Stderr, "rsvbench:", err)
					os.Exit(1)
				}
				r, ran, err := runWorkload(ctx, t, run, w)
				t.close()
				if err != nil {
					fmt.Fprintln(os.Stderr, "rsvbench:", err)
					os.Exit(1)
				}
				if ran {
					results = append(results, r)
				}
			}
		}
	}
	report(os.Stdout, cfg, results)
	for _, r := range results {
		if r.over != 0 {
			os.Exit(1)
		}
	}
}

// parseClients reads --clients: one number of clients, or a comma-separated list, each at least 1.
func parseClients(s string) ([]int, error) {
	var out []int
	for _, v := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a number of clients of at least 1", v)
		}
		out = append(out, n)
	}
	return out, nil
}

// plan is what one workload does: the resources it puts first, and each call's booking.
type plan struct {
	resources int // how many resources (or units) it books
	catalogue []resourceSpec
	pick      func(rng *rand.Rand) booking
}

var year = time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)

// planFor makes workload w's plan, its resource ids starting with prefix. Each booking is a
// random 1–3 h window (2 h on average). spread, hot, mixed and read start it within the span
// from the start of 2031. pool and capacity sell a calendar that rolls forward as they book:
// call k starts within the span after k steps, a step being what makes the bookings asked for
// at an instant, once the span has rolled past it, cfg.load times the places there are (units,
// or resources times capacity). So their units or places fill at times, as a hotel's nights
// do, in the same share of calls however fast the target is; the first span/step calls find
// the calendar emptier.
func planFor(cfg config, w, prefix string) plan {
	n, span := cfg.resources, cfg.span
	if n == 0 {
		n = map[string]int{"hot": 1, "capacity": 1, "pool": 10}[w]
		if n == 0 {
			n = 10000
		}
	}
	rolling := w == "pool" || w == "capacity"
	if span == 0 {
		span = 365 * 24 * time.Hour
		if rolling {
			span = 24 * time.Hour
		}
	}
	places := n
	if w == "capacity" {
		places *= cfg.capacity
	}
	step := time.Duration(float64(2*time.Hour) / (cfg.load * float64(places)))
	var calls atomic.Int64
	window := func(rng *rand.Rand) (time.Time, time.Time) {
		from := year
		if rolling {
			from = from.Add(time.Duration(calls.Add(1)) * step).Truncate(time.Minute)
		}
		start := from.Add(time.Duration(rng.Int64N(int64(span/time.Minute))) * time.Minute)
		return start, start.Add(time.Duration(60+rng.IntN(121)) * time.Minute)
	}
	p := plan{resources: n}
	switch w {
	case "pool":
		pool := prefix + "pool"
		for i := range n {
			p.catalogue = append(p.catalogue, resourceSpec{id: fmt.Sprintf("%su%d", prefix, i), pool: pool, capacity: 1})
		}
		p.pick = func(rng *rand.Rand) booking {
			s, e := window(rng)
			return booking{pool: pool, start: s, end: e}
		}
		return p
	case "capacity":
		for i := range n {
			p.catalogue = append(p.catalogue, resourceSpec{id: fmt.Sprintf("%scap%d", prefix, i), capacity: cfg.capacity})
		}
	case "search":
		// Pools of 100 units, each labelled with a view and a number of beds; each call asks
		// for 1 to 3 nights, from 15:00 to 11:00, starting on a day within the span.
		for i := range n {
			p.catalogue = append(p.catalogue, resourceSpec{id: fmt.Sprintf("%sroom%05d", prefix, i), pool: fmt.Sprintf("%spool%03d", prefix, i/100), capacity: 1,
				labels: map[string]string{"view": searchViews[i%len(searchViews)], "beds": fmt.Sprint(1 + i/len(searchViews)%3)}})
		}
		days := max(int(span/(24*time.Hour)), 1)
		p.pick = func(rng *rand.Rand) booking {
			start := year.AddDate(0, 0, rng.IntN(days)).Add(15 * time.Hour)
			end := start.AddDate(0, 0, 1+rng.IntN(3)).Add(-4 * time.Hour)
			return booking{resource: p.catalogue[rng.IntN(len(p.catalogue))].id, start: start, end: end}
		}
		return p
	}
	p.pick = func(rng *rand.Rand) booking {
		s, e := window(rng)
		id := prefix + fmt.Sprint(rng.IntN(n))
		if p.catalogue != nil {
			id = p.catalogue[rng.IntN(len(p.catalogue))].id
		}
		return booking{resource: id, start: s, end: e}
	}
	return p
}

// runWorkload runs cfg.clients clients of workload w against t for cfg.duration; false when t
// cannot run it.
func runWorkload(ctx context.Context, t target, cfg config, w string) (result, bool, error) {
	prefix := cfg.prefix
	if prefix == "" {
		prefix = fmt.Sprintf("b%d-%d-", cfg.seed, time.Now().UnixNano()%1e9) // this run's resources
	}
	p := planFor(cfg, w, prefix)
	if p.catalogue != nil {
		supported, err := t.catalogue(ctx, p.catalogue)
		if err != nil {
			return result{}, false, fmt.Errorf("%s, %s: putting the catalogue: %w", t.name(), w, err)
		}
		if !supported {
			fmt.Fprintf(os.Stderr, "rsvbench: %s has no catalogue: %s not run on it\n", t.name(), w)
			return result{}, false, nil
		}
	}
	var stored []string // read: the ids of the pre-filled reservations, for Get
	if w == "read" && cfg.prefill == 0 {
		if lister, ok := t.(interface {
			ids(context.Context, int) ([]string, error)
		}); ok {
			var err error
			if stored, err = lister.ids(ctx, 100000); err != nil {
				fmt.Fprintln(os.Stderr, "rsvbench: reading stored ids:", err)
			}
		}
	}
	if (w == "read" || w == "search") && cfg.prefill > 0 {
		fmt.Fprintf(os.Stderr, "rsvbench: storing %d reservations first...\n", cfg.prefill)
		var wg sync.WaitGroup
		var mu sync.Mutex
		per := cfg.prefill / cfg.clients
		for c := range cfg.clients {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(cfg.seed, uint64(1000+c)))
				for range per {
					if id, _, out, _ := t.reserve(ctx, p.pick(rng)); out == ok {
						mu.Lock()
						stored = append(stored, id)
						mu.Unlock()
					}
				}
			})
		}
		wg.Wait()
	}
	units := map[string]bool{} // pool: what an assigned unit must be
	for _, r := range p.catalogue {
		if r.pool != "" {
			units[r.id] = true
		}
	}
	fmt.Fprintf(os.Stderr, "rsvbench: %s, %s, %d clients, %s...\n", t.name(), w, cfg.clients, cfg.duration)
	res := result{workload: w, target: t.name(), resources: p.resources, clients: cfg.clients, refused: map[string]int{}, errs: map[string]int{}, reads: map[string][]time.Duration{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	cost := startCost(ctx, t)
	stop := time.Now().Add(cfg.duration)
	start := time.Now()
	for c := range cfg.clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(cfg.seed, uint64(c)))
			var mine []string
			var lat []time.Duration
			var okN int
			refusedN, errs := map[string]int{}, map[string]int{}
			reads := map[string][]time.Duration{}
			for time.Now().Before(stop) {
				kind := "reserve"
				switch w {
				case "mixed":
					if k := rng.IntN(10); len(mine) > 0 && k >= 6 {
						kind = [...]string{"confirm", "confirm", "query", "cancel"}[k-6]
					}
				case "read":
					kind = [...]string{"get", "query", "free"}[rng.IntN(3)]
				case "search":
					kind = "search"
				}
				b := p.pick(rng)
				t0 := time.Now()
				var out outcome
				var code, id string
				if kind == "reserve" {
					var got string
					id, got, out, code = t.reserve(ctx, b)
					if out == ok && b.pool != "" && !units[got] {
						out, code = failed, "UNIT_NOT_IN_POOL"
					}
					if out == ok {
						mine = append(mine, id)
					}
				} else {
					switch {
					case w == "read" && len(stored) > 0:
						id = stored[rng.IntN(len(stored))]
					case len(mine) > 0:
						id = mine[rng.IntN(len(mine))]
					}
					from, to := b.start.Truncate(24*time.Hour), b.start.Truncate(24*time.Hour).Add(7*24*time.Hour)
					if kind == "search" {
						from, to = b.start, b.end
					}
					var supported bool
					if out, code, supported = t.other(ctx, kind, id, b.resource, from, to); !supported {
						continue
					}
					if kind == "cancel" && out == ok {
						mine = slices.DeleteFunc(mine, func(x string) bool { return x == id })
					}
				}
				d := time.Since(t0)
				lat = append(lat, d)
				if kind != "reserve" {
					reads[kind] = append(reads[kind], d)
				}
				switch out {
				case ok:
					okN++
				case refused:
					refusedN[code]++
				default:
					errs[code]++
				}
			}
			mu.Lock()
			res.ok += okN
			res.latencies = append(res.latencies, lat...)
			for k, v := range refusedN {
				res.refused[k] += v
			}
			for k, v := range errs {
				res.errs[k] += v
			}
			for k, v := range reads {
				res.reads[k] = append(res.reads[k], v...)
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	cost.stop(ctx, &res)
	slices.Sort(res.latencies)
	n, err := t.overbooked(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rsvbench: capacity check:", err)
		n = -1
	}
	res.over = n
	return res, true, nil
}

// searchViews are the views of the search workload's resources, and searchSelectors the
// selectors it asks with, one picked by the window's start (so that both targets ask alike).
var (
	searchViews     = []string{"sea", "garden", "city"}
	searchSelectors = []string{"view=sea,beds>=2", "view in (sea,garden)", "beds=3", "view!=city,beds<3"}
)

// searchSelector is the selector a search for a window starting at start asks with.
func searchSelector(start time.Time) string {
	return searchSelectors[start.YearDay()%len(searchSelectors)]
}

// quantile is the q-quantile of d, which is sorted.
func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[min(len(d)-1, int(q*float64(len(d))))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d.Microseconds())/1000) }

func perSecond(n int, d time.Duration) float64 { return float64(n) / d.Seconds() }

// report prints each workload's results side by side, with the service's ratios to each floor,
// and, for several workloads, a closing note of each one's ok/s and p99 beside the first's.
func report(w io.Writer, cfg config, results []result) {
	for i, r := range results {
		if i > 0 && results[i-1].workload == r.workload && results[i-1].clients == r.clients {
			continue
		}
		var same []result
		for _, s := range results[i:] {
			if s.workload != r.workload || s.clients != r.clients {
				break
			}
			same = append(same, s)
		}
		reportWorkload(w, cfg, same)
	}
	var clients []int
	for _, r := range results {
		if !slices.Contains(clients, r.clients) {
			clients = append(clients, r.clients)
		}
	}
	for _, c := range clients {
		var first result
		var beside []result
		for _, r := range results {
			if r.target != "service" || r.clients != c {
				continue
			}
			if first.workload == "" {
				first = r
			} else {
				beside = append(beside, r)
			}
		}
		if len(beside) == 0 {
			continue
		}
		fmt.Fprintf(w, "\nservice, in this run, %d clients: ", c)
		for i, r := range append([]result{first}, beside...) {
			if i > 0 {
				fmt.Fprint(w, "; ")
			}
			fmt.Fprintf(w, "%s %.0f ok/s, p99 %s ms", r.workload, perSecond(r.ok, r.elapsed), ms(quantile(r.latencies, .99)))
		}
		fmt.Fprintln(w)
		for _, r := range beside {
			fmt.Fprintf(w, "%s / %s: ok/s %.2fx, p99 %.2fx\n", r.workload, first.workload,
				ratio(r.ok, r.elapsed, first.ok, first.elapsed), float64(quantile(r.latencies, .99))/float64(max(1, quantile(first.latencies, .99))))
		}
	}
}

// reportWorkload prints the results of one workload at one number of clients, a row per
// target: its rates, latencies, the capacity check, and the machine's busy CPU per ok call;
// then each target's refusals, reads, and the MySQL server's counters per ok call.
func reportWorkload(w io.Writer, cfg config, results []result) {
	r0 := results[0]
	clients := r0.clients
	if clients == 0 {
		clients = cfg.clients
	}
	reads := ""
	if cfg.consistency != "" {
		reads = ", reads " + cfg.consistency
	}
	fmt.Fprintf(w, "\nworkload %s, %d clients, %s per target, %d resources, seed %d%s\n\n", r0.workload, clients, cfg.duration, r0.resources, cfg.seed, reads)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tok/s\trefusals/s\terrors\tp50 ms\tp99 ms\tp99.9 ms\toverbooked\tcpu µs/ok\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%s\t%s\t%s\t%s\t%d\t%s\t\n", r.target, perSecond(r.ok, r.elapsed), perSecond(r.refusals(), r.elapsed), counts(r.errs),
			ms(quantile(r.latencies, .5)), ms(quantile(r.latencies, .99)), ms(quantile(r.latencies, .999)), r.over, r.cpuPerOK())
	}
	tw.Flush()
	for _, r := range results {
		if len(r.refused) > 0 {
			fmt.Fprintf(w, "%s refusals: %s\n", r.target, counts(r.refused))
		}
		for _, k := range []string{"get", "query", "free", "search"} {
			if d := r.reads[k]; len(d) > 0 {
				slices.Sort(d)
				fmt.Fprintf(w, "%s %s: %d calls, %.0f/s, p50 %s ms, p99 %s ms\n", r.target, k, len(d), perSecond(len(d), r.elapsed), ms(quantile(d, .5)), ms(quantile(d, .99)))
			}
		}
		if c := r.countersPerOK(); c != "" {
			fmt.Fprintf(w, "%s server, per ok call: %s\n", r.target, c)
		}
	}
	if len(results) > 1 && r0.target == "service" {
		for _, f := range results[1:] {
			fmt.Fprintf(w, "service / %s: ok/s %.2fx, refusals/s %.2fx, p99 %.2fx, cpu/ok %s\n", f.target,
				ratio(r0.ok, r0.elapsed, f.ok, f.elapsed), ratio(r0.refusals(), r0.elapsed, f.refusals(), f.elapsed),
				float64(quantile(r0.latencies, .99))/float64(max(1, quantile(f.latencies, .99))), cpuRatio(r0, f))
		}
	}
}

// cpuRatio is a's busy CPU per ok call over b's, or "-".
func cpuRatio(a, b result) string {
	if !a.cpuKnown || !b.cpuKnown || a.ok == 0 || b.ok == 0 || b.busy == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", (float64(a.busy)/float64(a.ok))/(float64(b.busy)/float64(b.ok)))
}

// counts prints a count per key, by key: "POOL_FULL:12 RESERVATION_CONFLICT:3", or "0".
func counts(m map[string]int) string {
	var s []string
	for k, v := range m {
		s = append(s, fmt.Sprintf("%s:%d", k, v))
	}
	sort.Strings(s)
	if len(s) == 0 {
		return "0"
	}
	return strings.Join(s, " ")
}

func ratio(a int, ae time.Duration, b int, be time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return perSecond(a, ae) / perSecond(b, be)
}
