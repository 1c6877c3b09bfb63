// Command rsvbench is the load generator: it runs one workload against the service over gRPC
// and, with --floor-mysql and --floor-postgres, the same workload straight against the
// databases with no service in front, and prints them side by side with their ratios.
//
//	rsvbench --workload spread --clients 16 --duration 10s --addr 127.0.0.1:50051 \
//	  --verify-dsn 'root@tcp(127.0.0.1:3306)/reservation' --floor-mysql --floor-postgres
//
// Workloads: spread (random 1–3 h windows over a year on --resources resources), hot (the same
// on --resources 1 or a few), mixed (reserve, confirm, query, cancel), read (Get, and a
// one-week Query and FreeSlots on one resource, on a pre-filled table). After a run it checks with SQL that no two reservations
// overlap.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// op is one operation a workload makes; it reports its outcome.
type outcome int

const (
	ok outcome = iota
	conflict
	failed
)

// target is what a workload runs against: the service, or a database floor.
type target interface {
	name() string
	reserve(ctx context.Context, resource string, start, end time.Time) (id string, out outcome, code string)
	// other runs a non-reserve operation of the mixed and read workloads; false if unsupported.
	other(ctx context.Context, kind string, id, resource string, start, end time.Time) (outcome, string, bool)
	overlaps(ctx context.Context) (int, error)
	close()
}

type config struct {
	workload  string
	clients   int
	duration  time.Duration
	resources int
	seed      uint64
	prefill   int
	prefix    string
}

// result is one run's figures.
type result struct {
	target    string
	ok, conf  int
	errs      map[string]int
	latencies []time.Duration
	elapsed   time.Duration
	overlaps  int
	reads     map[string][]time.Duration
}

func main() {
	var cfg config
	addr := flag.String("addr", "127.0.0.1:50051", "the service's gRPC address; empty to skip the service")
	verify := flag.String("verify-dsn", "", "the service's MySQL database, for the overlap check after the run")
	floorMySQL := flag.Bool("floor-mysql", false, "also run the workload straight against MySQL (the service's transaction, no gRPC, no Redis)")
	mysqlDSN := flag.String("mysql-dsn", "root@tcp(127.0.0.1:3306)/", "MySQL server for --floor-mysql (a database rsvbench_floor is made)")
	floorPG := flag.Bool("floor-postgres", false, "also run it against PostgreSQL with the RFC's design (EXCLUDE USING gist and a change trigger)")
	pgDSN := flag.String("pg-dsn", "postgres://postgres@127.0.0.1:5432/postgres", "PostgreSQL server for --floor-postgres (a database rsvbench_floor is made)")
	flag.StringVar(&cfg.workload, "workload", "spread", "spread, hot, mixed or read")
	flag.IntVar(&cfg.clients, "clients", 16, "concurrent clients")
	flag.DurationVar(&cfg.duration, "duration", 10*time.Second, "how long each target runs")
	flag.IntVar(&cfg.resources, "resources", 0, "resources to spread over (default: 10000 for spread, mixed and read, 1 for hot)")
	flag.Uint64Var(&cfg.seed, "seed", 1, "random seed")
	flag.StringVar(&cfg.prefix, "resource-prefix", "", "resource ids are this prefix and a number below --resources (default: a prefix new to the run)")
	flag.IntVar(&cfg.prefill, "prefill", 100000, "read: reservations stored before the run; 0 reads up to 100,000 stored ids through --verify-dsn instead (for a table filled by other means)")
	flag.Parse()
	if cfg.resources == 0 {
		cfg.resources = 10000
		if cfg.workload == "hot" {
			cfg.resources = 1
		}
	}
	ctx := context.Background()
	var results []result
	run := func(t target, err error) {
		if err != nil {
			fmt.Fprintln(os.Stderr, "rsvbench:", err)
			os.Exit(1)
		}
		defer t.close()
		fmt.Fprintf(os.Stderr, "rsvbench: %s, %s, %d clients, %s...\n", t.name(), cfg.workload, cfg.clients, cfg.duration)
		results = append(results, runWorkload(ctx, t, cfg))
	}
	if *addr != "" {
		run(newService(ctx, *addr, *verify))
	}
	if *floorMySQL {
		run(newMySQLFloor(ctx, *mysqlDSN))
	}
	if *floorPG {
		run(newPostgresFloor(ctx, *pgDSN))
	}
	report(os.Stdout, cfg, results)
	for _, r := range results {
		if r.overlaps != 0 {
			os.Exit(1)
		}
	}
}

// runWorkload runs cfg.clients clients against t for cfg.duration.
func runWorkload(ctx context.Context, t target, cfg config) result {
	prefix := cfg.prefix
	if prefix == "" {
		prefix = fmt.Sprintf("b%d-%d-", cfg.seed, time.Now().UnixNano()%1e9) // this run's resources
	}
	year := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	window := func(rng *rand.Rand) (string, time.Time, time.Time) {
		start := year.Add(time.Duration(rng.IntN(365*24*60)) * time.Minute)
		return prefix + fmt.Sprint(rng.IntN(cfg.resources)), start, start.Add(time.Duration(60+rng.IntN(121)) * time.Minute)
	}
	var stored []string // read: the ids of the pre-filled reservations, for Get
	if cfg.workload == "read" && cfg.prefill == 0 {
		if lister, ok := t.(interface {
			ids(context.Context, int) ([]string, error)
		}); ok {
			var err error
			if stored, err = lister.ids(ctx, 100000); err != nil {
				fmt.Fprintln(os.Stderr, "rsvbench: reading stored ids:", err)
			}
		}
	}
	if cfg.workload == "read" && cfg.prefill > 0 {
		fmt.Fprintf(os.Stderr, "rsvbench: storing %d reservations first...\n", cfg.prefill)
		var wg sync.WaitGroup
		var mu sync.Mutex
		per := cfg.prefill / cfg.clients
		for c := range cfg.clients {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(cfg.seed, uint64(1000+c)))
				for range per {
					r, s, e := window(rng)
					if id, out, _ := t.reserve(ctx, r, s, e); out == ok {
						mu.Lock()
						stored = append(stored, id)
						mu.Unlock()
					}
				}
			})
		}
		wg.Wait()
	}
	res := result{target: t.name(), errs: map[string]int{}, reads: map[string][]time.Duration{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	stop := time.Now().Add(cfg.duration)
	start := time.Now()
	for c := range cfg.clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(cfg.seed, uint64(c)))
			var mine []string
			var lat []time.Duration
			var okN, confN int
			errs := map[string]int{}
			reads := map[string][]time.Duration{}
			for time.Now().Before(stop) {
				kind := "reserve"
				switch cfg.workload {
				case "mixed":
					if k := rng.IntN(10); len(mine) > 0 && k >= 6 {
						kind = [...]string{"confirm", "confirm", "query", "cancel"}[k-6]
					}
				case "read":
					kind = [...]string{"get", "query", "free"}[rng.IntN(3)]
				}
				r, s, e := window(rng)
				t0 := time.Now()
				var out outcome
				var code, id string
				if kind == "reserve" {
					id, out, code = t.reserve(ctx, r, s, e)
					if out == ok {
						mine = append(mine, id)
					}
				} else {
					switch {
					case cfg.workload == "read" && len(stored) > 0:
						id = stored[rng.IntN(len(stored))]
					case len(mine) > 0:
						id = mine[rng.IntN(len(mine))]
					}
					var supported bool
					if out, code, supported = t.other(ctx, kind, id, r, s.Truncate(24*time.Hour), s.Truncate(24*time.Hour).Add(7*24*time.Hour)); !supported {
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
				case conflict:
					confN++
				default:
					errs[code]++
				}
			}
			mu.Lock()
			res.ok += okN
			res.conf += confN
			res.latencies = append(res.latencies, lat...)
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
	n, err := t.overlaps(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rsvbench: overlap check:", err)
		n = -1
	}
	res.overlaps = n
	return res
}

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[min(len(d)-1, int(q*float64(len(d))))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d.Microseconds())/1000) }

// report prints the results side by side, with the service's ratios to each floor.
func report(w *os.File, cfg config, results []result) {
	fmt.Fprintf(w, "workload %s, %d clients, %s per target, %d resources, seed %d\n\n", cfg.workload, cfg.clients, cfg.duration, cfg.resources, cfg.seed)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tok/s\tconflicts/s\terrors\tp50 ms\tp99 ms\tp99.9 ms\toverlaps\t")
	for _, r := range results {
		s := r.elapsed.Seconds()
		var errs []string
		for k, v := range r.errs {
			errs = append(errs, fmt.Sprintf("%s:%d", k, v))
		}
		sort.Strings(errs)
		e := strings.Join(errs, " ")
		if e == "" {
			e = "0"
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%s\t%s\t%s\t%s\t%d\t\n", r.target, float64(r.ok)/s, float64(r.conf)/s, e,
			ms(quantile(r.latencies, .5)), ms(quantile(r.latencies, .99)), ms(quantile(r.latencies, .999)), r.overlaps)
	}
	tw.Flush()
	for _, r := range results {
		for _, k := range []string{"get", "query", "free"} {
			if d := r.reads[k]; len(d) > 0 {
				fmt.Fprintf(w, "%s %s: %d calls, p50 %s ms, p99 %s ms\n", r.target, k, len(d), ms(quantile(d, .5)), ms(quantile(d, .99)))
			}
		}
	}
	if len(results) > 1 && results[0].target == "service" {
		svc := results[0]
		for _, f := range results[1:] {
			fmt.Fprintf(w, "service / %s: ok/s %.2fx, conflicts/s %.2fx, p99 %.2fx\n", f.target,
				ratio(svc.ok, svc.elapsed, f.ok, f.elapsed), ratio(svc.conf, svc.elapsed, f.conf, f.elapsed),
				float64(quantile(svc.latencies, .99))/float64(max(1, quantile(f.latencies, .99))))
		}
	}
}

func ratio(a int, ae time.Duration, b int, be time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return (float64(a) / ae.Seconds()) / (float64(b) / be.Seconds())
}
